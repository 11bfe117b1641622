{{/* Chart name (nameOverride wins), at most 63 characters. */}}
{{- define "cpt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of derived object names: fullnameOverride, else <release>-<chart> (the release alone if it holds the chart name). */}}
{{- define "cpt.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The namespace of the pods and of every object: namespace.name, else the release namespace. */}}
{{- define "cpt.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name }}
{{- end }}

{{/* The standard labels of every object; call with (dict "ctx" $ "component" "<component>"). */}}
{{- define "cpt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "cpt.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: cpt-pipeline
app.kubernetes.io/component: {{ .component }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The tasks image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "cpt.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/* The mix file shipped with the package (files/mixes links to cpt_tasks/mixes). */}}
{{- define "cpt.mixFile" -}}
{{- $path := printf "files/mixes/%s.json" .Values.pipeline.mix }}
{{- $content := .Files.Get $path }}
{{- if not $content }}
{{- fail (printf "pipeline.mix %q: no %s in the chart (shipped mixes live in cpt_tasks/mixes)" .Values.pipeline.mix $path) }}
{{- end }}
{{- $content }}
{{- end }}
