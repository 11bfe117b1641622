"""The nodes of a multi-node run agree before any process group exists (``--nnodes`` > 1).

Node 0's ``cpt-tasks train`` hosts a small key-value store (torch's ``TCPStore``) on ``master_port + 1``;
every node publishes what it is about to do: the run folder, its options (all but the per-node ones), the
verification report's hash, its decision (train, export or already complete) and resume step, its device and
code version. Then every node compares every node's view:

- a difference (two nodes given other settings, another run id, another image) is a user error on *every*
  node, naming the node and the key: all exit 2, so Airflow does not retry;
- a node that refused its inputs (exit 2) or failed (exit 1) before agreeing makes every node exit the same
  way at once, instead of the others waiting for it;
- node 0 writes a probe file into the run folder and a marker into its ``/dev/shm``: a node that cannot read
  the probe does not share the storage (a node-local ``save_root``: exit 2); a node that sees the marker shares
  node 0's ``/dev/shm`` and would collide with it in streaming's shared memory (exit 2).

Node 0 may also hand every node what it decided alone (``shared``: the MLflow logger of the run it opened,
which every rank needs because Composer's logger broadcasts from global rank 0).

A node that never arrives is waited for ``node_wait`` seconds (pods may wait for GPU nodes to scale up), then
the others exit 1 (transient: retried).
"""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.errors import UserError
from cpt_tasks.runs.log import teller
from cpt_tasks.storage import join, read_bytes, remove_file, write_bytes_atomic

PER_NODE_OPTIONS = ("node_rank", "local_dir", "master_addr")  # the only options nodes may differ in
SHM = Path("/dev/shm")
READ_WAIT = 60.0  # how long node 0 keeps the store up for the others to read the verdict
_NODE = "cpt/node/{}"
_READ = "cpt/read"
_SHARED = "node0.shared"  # in node 0's view only: what every node takes from node 0


say = teller("train")


class Disagreement(UserError):
    """The nodes are not about to train the same thing, or do not share the run's storage."""


class PeerFailed(RuntimeError):
    """Another node failed (transiently) before training."""


class NodeAgreement:
    """One node's side of the agreement (see the module docstring)."""

    def __init__(self, cfg: TrainConfig) -> None:
        import torch.distributed as dist

        self.cfg = cfg
        self.rank = cfg.node_rank
        self.timeout = timedelta(seconds=cfg.node_wait)
        self.done = False
        self._marker: Path | None = None
        self._probe: str | None = None
        say(f"node {self.rank} of {cfg.nnodes}: " + ("hosting" if self.rank == 0 else "joining")
            + f" the nodes' agreement on {cfg.master_addr}:{cfg.master_port + 1}")
        try:
            self.store = dist.TCPStore(cfg.master_addr, cfg.master_port + 1, world_size=cfg.nnodes,
                                       is_master=self.rank == 0, timeout=self.timeout, wait_for_workers=False)
        except Exception as exc:  # no server in time, an unresolvable name, a port in use
            raise PeerFailed(f"node {self.rank}: could not reach node 0's agreement store at {cfg.master_addr}:"
                             f"{cfg.master_port + 1} within {cfg.node_wait:.0f}s: {exc}") from None

    def agree(self, view: dict[str, Any], shared: Any = None) -> Any:
        """Publish this node's ``view`` (flat JSON values; ``run_folder`` among them), wait for every node's,
        raise :class:`Disagreement` or :class:`PeerFailed` unless all are the same. Returns node 0's ``shared``
        (what node 0 decided alone and every node must use, such as the MLflow logger's run)."""
        mine = {**view, **{f"option.{k}": v for k, v in self.cfg.model_dump(mode="json").items()
                           if k not in PER_NODE_OPTIONS}}
        if self.rank == 0:
            mine[_SHARED] = shared
        try:
            mine.update(self._place_probes(view["run_folder"]) if self.rank == 0 else self._read_probes())
            everyone = self._exchange(mine)
            problems = self._compare(everyone)
        finally:
            self._finish()
        if problems:
            raise Disagreement("the nodes do not agree, refusing to train: " + "; ".join(problems))
        say(f"node {self.rank}: all {self.cfg.nnodes} nodes agree (run folder {view['run_folder']}, "
            f"{view['decision']}, step {view['resume_step']})")
        return everyone[0].get(_SHARED)

    def refuse(self, exc: BaseException) -> None:
        """Tell the other nodes that this node cannot train (so they stop at once, with the same status)."""
        kind = "refused" if isinstance(exc, UserError) else "failed"
        try:
            self.store.set(_NODE.format(self.rank), json.dumps({kind: f"{type(exc).__name__}: {exc}"[:2000]}))
        except Exception as store_error:  # the others then wait until node_wait
            say(f"node {self.rank}: could not tell the other nodes ({store_error})")
        self._finish()

    def _finish(self) -> None:
        """Let every node read the verdict (node 0 keeps the store up meanwhile), then remove the probes."""
        if self.done:
            return
        self.done = True
        try:
            self.store.add(_READ, 1)
            if self.rank == 0:
                deadline = time.monotonic() + READ_WAIT
                while self.store.add(_READ, 0) < self.cfg.nnodes and time.monotonic() < deadline:
                    time.sleep(0.05)
        except Exception:  # a node gone: nothing left to wait for
            pass
        if self._marker is not None:
            self._marker.unlink(missing_ok=True)
        if self._probe is not None:
            remove_file(self._probe)
        del self.store  # node 0: the server goes with it

    def _place_probes(self, run_folder: str) -> dict[str, Any]:
        token = secrets.token_hex(8)
        self._probe = join(run_folder, f".cpt-nodes-probe-{token}")
        write_bytes_atomic(self._probe, token.encode())
        if SHM.is_dir():
            self._marker = SHM / f"cpt-nodes-{token}"
            self._marker.write_text(token)
        return {"probe": self._probe, "probe_token": token}

    def _read_probes(self) -> dict[str, Any]:
        first = self._get(0)
        if "probe" not in first:  # node 0 refused or failed: _compare reports it
            return {}
        data = read_bytes(first["probe"])
        return {"probe": first["probe"], "probe_token": data.decode() if data else None,
                "shares_node0_shm": (SHM / f"cpt-nodes-{first['probe_token']}").exists()}

    def _get(self, rank: int) -> dict[str, Any]:
        key = _NODE.format(rank)
        try:
            self.store.wait([key], self.timeout)
            return json.loads(self.store.get(key))
        except Exception as exc:
            raise PeerFailed(f"node {self.rank}: node {rank} did not join within {self.cfg.node_wait:.0f}s "
                             f"({type(exc).__name__})") from None

    def _exchange(self, mine: dict[str, Any]) -> list[dict[str, Any]]:
        self.store.set(_NODE.format(self.rank), json.dumps(mine, sort_keys=True))
        return [mine if rank == self.rank else self._get(rank) for rank in range(self.cfg.nnodes)]

    def _compare(self, everyone: list[dict[str, Any]]) -> list[str]:
        for rank, view in enumerate(everyone):
            if "refused" in view:
                raise UserError(f"node {rank} refused to train: {view['refused']}")
            if "failed" in view:
                raise PeerFailed(f"node {rank} failed before training: {view['failed']}")
        problems = []
        first = everyone[0]
        for rank, view in enumerate(everyone[1:], start=1):
            if view.get("probe_token") != first["probe_token"]:
                problems.append(f"node {rank} cannot read {first['probe']}, which node 0 wrote: save_root is not "
                                "storage every node sees (a node-local path?); use object storage (s3://, gs://) "
                                "or a ReadWriteMany volume mounted on every node")
            if view.get("shares_node0_shm"):
                problems.append(f"node {rank} shares node 0's /dev/shm: nodes on one machine need a private "
                                "/dev/shm each (streaming's shared memory would collide); the local runner gives "
                                "each node its own with unshare")
        skip = ("probe", "probe_token", "shares_node0_shm", _SHARED)
        keys = sorted({k for view in everyone for k in view if k not in skip})
        for key in keys:
            values = [view.get(key) for view in everyone]
            if any(v != values[0] for v in values):
                problems.append(f"{key} differs: " + ", ".join(f"node {r} {v!r}" for r, v in enumerate(values)))
        return problems


@contextmanager
def node_agreement(cfg: TrainConfig) -> Iterator[NodeAgreement | None]:
    """The agreement of a multi-node run (None for one node). An error before :meth:`NodeAgreement.agree` is
    published to the other nodes, so they stop too."""
    if cfg.nnodes == 1:
        yield None
        return
    agreement = NodeAgreement(cfg)
    try:
        yield agreement
    except BaseException as exc:
        if not agreement.done:
            agreement.refuse(exc)
        raise
    if not agreement.done:
        agreement.refuse(RuntimeError("the node ended without agreeing"))
