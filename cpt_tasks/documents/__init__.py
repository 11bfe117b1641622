"""The documents that pass between the pipeline's jobs, each a typed, strict model with its format version.

A document is JSON on storage (plan, conversion manifest, verification report, training run manifest, the
finished-run pointer) or a job's result handed to the DAG (``$CPT_RESULT_FILE``, the task's XCom). Every one
is read with :func:`read_document` / :func:`parse_document` and written with :func:`write_document` /
:func:`dump_document`, which validate it against its model both ways: unknown keys, missing fields and a
wrong format version are errors naming the file. Light core: pydantic only.
"""

from cpt_tasks.documents.document_base import (Document, DocumentError, dump_document, find_document, find_document_sha256,
                                      parse_document, read_document, write_document)

__all__ = ["Document", "DocumentError", "dump_document", "find_document", "find_document_sha256", "parse_document",
           "read_document", "write_document"]
