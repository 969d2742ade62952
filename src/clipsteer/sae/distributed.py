"""Scaling out on torch.distributed: the one module that makes collective calls.

Launch any command under `torchrun` (`torchrun --nproc-per-node 2 -m clipsteer train ...`); each process
reads its place from torchrun's environment (`Rank.from_env`). Without a launcher the rank is `Rank()`
(index 0 of a world of one), no process group is created and every collective below is a no-op, so
single-process runs behave exactly as before.

- `process_group(device)`: creates (and later destroys) the default process group when the process was
  started by torchrun: backend `nccl` for CUDA devices, `gloo` otherwise (picked automatically).
- `recipes_for(rank, recipes)`: "recipes" mode spreads a sweep's SAEs across ranks; no communication.
- `RankSlice`: "data" mode's BatchSource: this rank's rows of every global batch of the shared stream.
- `Sync`: the collectives the trainer, updater, objectives and firing statistics need (mean / sum of
  tensors, a broadcast from rank 0, a barrier), plus `agree` (every rank learns whether any rank failed),
  injected into them; `LOCAL` is the world of one.
- `job_folder_lock(folder, command, sync)`: the output folder's lock for a job of several ranks: rank 0
  holds it for the whole job, every rank learns at the start whether it got it (docs/scaling-out.md).
- `run_local(fn, world, *args)`: torchrun's environment for `world` processes on this machine, without
  torchrun (tests, benchmarks): each process runs `fn(*args)`, which joins with `process_group`. The
  rendezvous store is held by the caller (no port to guess), and a job that outlives `timeout_s` is
  stopped, with its processes, and reported.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from clipsteer.errors import ClipsteerError, FolderLockedError, OutputError
from clipsteer.run_folder import folder_lock
from clipsteer.sae.configs import Backend
from clipsteer.sae.source import BatchSource

T = TypeVar("T")



class DistributedError(ClipsteerError, RuntimeError):
    """A launch that cannot work (an unknown backend, a mode that does not fit the world size), or a job
    whose other rank failed."""


@dataclass(frozen=True)
class Rank:
    """This process's place in the job: `index` in [0, world); `local` is its index on this node."""

    index: int = 0
    world: int = 1
    local: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.world or self.local < 0:
            raise DistributedError(f"Rank(index={self.index}, world={self.world}, local={self.local}): expected "
                                   "0 <= index < world and local >= 0")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes what the job writes once (checkpoints, metrics, metadata)."""
        return self.index == 0

    @classmethod
    def from_env(cls) -> Rank:
        """The rank torchrun set (RANK, WORLD_SIZE, LOCAL_RANK); Rank() when the variables are absent."""
        if "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
        except (KeyError, ValueError) as error:
            raise DistributedError(f"torchrun environment unreadable ({error}): WORLD_SIZE is set but RANK / "
                                   "LOCAL_RANK are missing or not integers") from None


def pick_backend(device: str, backend: Backend = "auto") -> str:
    """nccl for CUDA devices, gloo otherwise (auto); an explicit choice is checked against the device."""
    cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        return "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        raise DistributedError(f"--dist.backend nccl needs a CUDA device, not device={device!r}; use gloo or auto")
    if backend not in ("nccl", "gloo"):
        raise DistributedError(f"--dist.backend {backend!r}: expected auto, nccl or gloo")
    return backend


@contextmanager
def process_group(device: str = "cpu", backend: Backend = "auto", timeout_s: float = 1800.0) -> Iterator[Rank]:
    """Join torchrun's job for the duration of the block and yield this process's Rank.

    Started without torchrun (or with a world of one) it creates nothing and yields Rank(). With nccl each
    process uses the GPU of its local rank (so a config's plain "cuda" means this rank's GPU). A group
    that already exists (made by the caller) is used as it is and left alone.
    """
    rank = Rank.from_env()
    if rank.world == 1 or dist.is_initialized():
        yield rank
        return
    chosen = pick_backend(device, backend)
    if chosen == "nccl":
        torch.cuda.set_device(rank.local)
    timeout = datetime.timedelta(seconds=timeout_s)
    store, _, _ = next(dist.rendezvous("env://", rank.index, rank.world, timeout=timeout))
    # torchrun's store outlives this group (the agent hosts it): a second group in the same process (harvest,
    # then train) must not read the first one's keys, so each group gets its own key prefix.
    joined = store.add("clipsteer/joined", 1)
    generation = (joined - 1) // rank.world
    dist.init_process_group(chosen, store=dist.PrefixStore(f"clipsteer/group_{generation}", store),
                            rank=rank.index, world_size=rank.world, timeout=timeout)
    try:
        yield rank
    finally:
        dist.destroy_process_group()


def recipes_for(rank: Rank, recipes: Sequence[T]) -> list[T]:
    """The recipes rank `rank` trains in "recipes" mode: every world-th one, starting at its index."""
    return list(recipes[rank.index::rank.world])


# ----- collectives ---------------------------------------------------------------------------------------------
SyncOp = Literal["mean", "sum", "from_main"]


@dataclass(frozen=True)
class Sync:
    """Collectives over all ranks of the job, in place; every call is a no-op in a world of one.

    Every rank must make the same calls in the same order (the trainer's steps guarantee it).
    """

    rank: Rank = Rank()

    @property
    def world(self) -> int:
        return self.rank.world

    def __call__(self, tensors: Sequence[Tensor], op: SyncOp = "mean") -> None:
        """Replace each tensor by its mean or sum over ranks, or by rank 0's value ("from_main")."""
        if self.rank.world == 1 or not tensors:
            return
        if op == "from_main":
            for tensor in tensors:
                dist.broadcast(tensor, src=0)
            return
        if op not in ("mean", "sum"):
            raise ValueError(f"Sync: unknown op {op!r}; expected mean, sum or from_main")
        # One collective per dtype and device: a flat buffer, reduced, copied back.
        groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
        for tensor in tensors:
            groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
        for group in groups.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)  # gloo has no AVG
            if op == "mean":
                flat /= self.rank.world
            offset = 0
            for t in group:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()

    def row_mean(self, x: Tensor) -> Tensor:
        """Mean over the rows of the global batch, [1, d] for x [n, d] (every rank holds n rows); detached."""
        mean = x.detach().mean(dim=0, keepdim=True)
        self([mean], "mean")
        return mean

    def total(self, value: Tensor) -> Tensor:
        """A detached scalar summed over ranks."""
        value = value.detach().clone()
        self([value], "sum")
        return value

    def barrier(self) -> None:
        if self.rank.world > 1:
            dist.barrier()

    def agree(self, error: BaseException | None) -> None:
        """Every rank reports whether its step failed; if any did, every rank raises (the failed ones their
        own error, the others a DistributedError naming the failed rank and its message). Call it where a
        failure on one rank would otherwise leave the others waiting at their next collective."""
        if self.rank.world == 1:
            if error is not None:
                raise error
            return
        reports: list[str | None] = [None] * self.rank.world
        dist.all_gather_object(reports, None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = [(r, message) for r, message in enumerate(reports) if message is not None]
        if failed:
            r, message = failed[0]
            raise DistributedError(f"rank {r} of {self.rank.world} failed: {message}")


LOCAL = Sync()


class RankSlice:
    """A BatchSource yielding this rank's share of each global batch: rows [r·B/W, (r+1)·B/W) of batch k.

    `batches(tokens_per_batch, ...)` takes the GLOBAL batch (tokens_per_batch); every rank reads the same shared stream
    (`parent`) and keeps its rows, so W ranks together see exactly the batches one process would.
    """

    def __init__(self, parent: BatchSource, rank: Rank) -> None:
        self.parent = parent
        self.rank = rank
        self.d_in = parent.d_in

    def rows_per_batch(self, tokens_per_batch: int) -> int:
        if tokens_per_batch % self.rank.world:
            raise DistributedError(f"data-parallel training: the global batch of {tokens_per_batch} rows does not split "
                                   f"evenly over {self.rank.world} ranks; choose a --trainer.tokens-per-batch divisible "
                                   f"by {self.rank.world}")
        return tokens_per_batch // self.rank.world

    def batches(self, tokens_per_batch: int, seed: int, start: int = 0) -> Iterator[Tensor]:
        share = self.rows_per_batch(tokens_per_batch)
        lo = self.rank.index * share
        stream = self.parent.batches(tokens_per_batch, seed, start)
        try:
            for batch in stream:
                yield batch[lo:lo + share]
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                close()


@contextmanager
def job_folder_lock(folder: str | Path, command: str, sync: Sync) -> Iterator[Path]:
    """`run_folder.folder_lock` for a job of `sync.world` ranks writing into one folder.

    Rank 0 takes the folder's lock and holds it for the whole block; the other ranks take none (a flock
    held by one process would refuse them) but learn, through `agree`, whether rank 0 got it, so a
    second job finds every one of its ranks refused at once instead of some waiting at a collective.
    On a normal exit the ranks meet at a barrier before rank 0 releases the lock, so the folder stays
    locked until every rank has finished writing. In a world of one this is `folder_lock` itself.
    """
    if sync.world == 1:
        with folder_lock(folder, command) as locked:
            yield locked
        return
    with ExitStack() as held:
        error: BaseException | None = None
        if sync.rank.is_main:
            try:
                held.enter_context(folder_lock(folder, command))
            except (FolderLockedError, OutputError) as err:
                error = err
        sync.agree(error)
        yield Path(folder)
        sync.barrier()


def run_local(fn: Callable[..., object], world: int, *args: object, timeout_s: float = 900.0) -> None:
    """Run `fn(*args)` in `world` fresh processes on this machine, with the environment torchrun would set
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `fn` must be importable (module level).

    Returns when all have finished. If one fails, the others are stopped and its error is raised here; if
    they are still running after `timeout_s` (a hang), all are stopped and a DistributedError says so.
    As under torchrun, this process hosts the rendezvous store (bound to a port the kernel picks, so no
    port is guessed or raced for) and every rank joins it as a client.
    """
    import torch.multiprocessing as mp

    store = dist.TCPStore("127.0.0.1", 0, None, True, datetime.timedelta(seconds=timeout_s),
                          wait_for_workers=False)
    context = mp.start_processes(_run_as_rank, args=(fn, world, store.port, args), nprocs=world,
                                 start_method="spawn", join=False)
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=min(5.0, max(0.1, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                alive = [r for r, p in enumerate(context.processes) if p.is_alive()]
                raise DistributedError(f"run_local({getattr(fn, '__name__', fn)}): ranks {alive} of {world} were "
                                       f"still running after {timeout_s:.0f} s (a hang?); stopped them")
    finally:
        for process in context.processes:   # stop what is left (join stops the survivors of a failure itself)
            if process.is_alive():
                process.terminate()
                process.join(10)
            if process.is_alive():
                process.kill()
                process.join(10)
        del store


def _run_as_rank(index: int, fn: Callable[..., object], world: int, port: int, args: tuple) -> None:
    os.environ.update(RANK=str(index), WORLD_SIZE=str(world), LOCAL_RANK=str(index), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
    fn(*args)
