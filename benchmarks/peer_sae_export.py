"""Train dictionary_learning's TopK SAE on a clipsteer store and save it as a clipsteer SAE folder, so the
suppression commands (`clipsteer typographic-defense`, `clipsteer debias`) can run on the best TopK peer's
SAEs as they run on clipsteer's (peers.md §23).

Driven as peers.py drives it (`peer_adapters.DictionaryLearning`: `trainer.update(step, x)`, Adam at one
constant lr, its own defaults otherwise), on batches of `--batch` rows drawn from one seeded permutation of
all the store's rows. The saved SAE encodes as dictionary_learning's does (ReLU, then top-k of
(x − b_dec)·W_enc + b_enc, raw inputs) and is checked against it on 8192 rows before it is written.
Needs the peers' environment (`pip install -e .[peers] torch==2.13.0`, see peers.py).

    PYTHONPATH=src python benchmarks/peer_sae_export.py --store acts/blocks.1.resid_post --out saes_dl/s0 \
        --seed 0 --lr 1e-3 --tokens 4000000
    clipsteer typographic-defense --saes saes_dl/s0 --max-images 1000 --seed 0 --selection.tokens all \
        --controls random --out typo_dl_s0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from peer_adapters import DictionaryLearning, Setting  # noqa: E402

from clipsteer.activations.store import ActivationStore  # noqa: E402
from clipsteer.sae.config import SAEConfig  # noqa: E402
from clipsteer.sae.io import save_sae  # noqa: E402
from clipsteer.sae.model import SparseAutoencoder  # noqa: E402

MAX_DEVIATION = 1e-3
"""Largest |clipsteer − dictionary_learning| reconstruction entry accepted before saving (fp32 rounding)."""


def as_clipsteer(ae: torch.nn.Module, config: SAEConfig) -> SparseAutoencoder:
    """dictionary_learning's AutoEncoderTopK (encoder: Linear d→F with bias, decoder: Linear F→d without,
    b_dec subtracted before encoding) as a clipsteer SAE with no input normalisation."""
    sae = SparseAutoencoder(config)
    with torch.no_grad():
        sae.W_enc.copy_(ae.encoder.weight.t())   # [d, F]
        sae.b_enc.copy_(ae.encoder.bias)         # [F]
        sae.W_dec.copy_(ae.decoder.weight.t())   # [F, d]
        sae.b_dec.copy_(ae.b_dec)                # [d]
    return sae


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="clipsteer activation store of one site")
    parser.add_argument("--out", required=True, help="SAE folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tokens", type=int, default=4_000_000)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    store = ActivationStore.open(args.store)
    spec = store.meta.spec
    rows = store.read(0, store.n_rows).float()   # [n, d]
    n, d = rows.shape
    if n <= args.batch:
        raise ValueError(f"--store {args.store}: {n} rows, need more than --batch={args.batch}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))

    def batch(step: int) -> torch.Tensor:
        start = (step * args.batch) % (n - args.batch)
        return rows[order[start:start + args.batch]]

    setting = Setting("topk", d, d * args.expansion, args.k, args.lr, args.batch, args.seed)
    library = DictionaryLearning(setting, 0.0, batch(0))   # its first update runs on batch 0
    for step in tqdm(range(1, args.tokens // args.batch), desc=f"dictionary_learning {spec.site}"):
        library.step(batch(step))

    config = SAEConfig(d_in=d, d_sae=setting.width, architecture="topk", k=args.k, normalization="none",
                       site=spec.site, tokens=spec.tokens, model=spec.model_name)
    sae = as_clipsteer(library.trainer.ae, config)
    check = rows[order[:8192]]
    with torch.no_grad():
        deviation = (sae.decode(sae.encode(check)) - library.trainer.ae(check)).abs().max().item()
    if not deviation < MAX_DEVIATION:
        raise RuntimeError(f"the converted SAE reconstructs {deviation:.2e} away from dictionary_learning's "
                           f"(expected < {MAX_DEVIATION})")
    path = save_sae(sae, args.out)
    print(f"{path}: max |clipsteer − dictionary_learning| reconstruction on 8192 rows {deviation:.2e}")
    return path


if __name__ == "__main__":
    main()
