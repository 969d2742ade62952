#!/usr/bin/env bash
# Issue 15's GPU cells: every library trained on one CUDA GPU, on the d=768 store of peers.md §8 (a random-weight
# ViT-B/32, seed 0, blocks.2.resid_post, the first 4,000 world:train images; last 100 images held out).
#   1. ReLU d=768 ×16 at 1M tokens: clipsteer (its default clip 0.02 since peers.md §16) and dictionary_learning
#      along λ frontiers (one process, paired steps), then overcomplete and saev (one process each).
#   2. TopK d=768 ×64, k 32, at 1M tokens: clipsteer, sparsify, dictionary_learning, overcomplete (one process).
#   3. TopK ×64 throughput with clipsteer under bf16 autocast (sparsify's forward always is, on a GPU).
#   4. clipsteer's own CLI training on the GPU from the store (the CUDA path users take), TopK ×16 at 1M tokens.
#   5. If time is left: TopK ×64 at 4M tokens.
# A peer that does not import is left out and the log says why.
# PLAN "diagnose" runs instead: clipsteer's ReLU recipe with one setting changed at a time (peers.py's ABLATIONS)
# along λ frontiers at 1M and 4M tokens, and a GPU profile of the TopK ×64 step beside sparsify's.
# Each job has its own time limit and the script stops starting jobs after BUDGET seconds, so a cut run still
# returns what finished. Needs torch with CUDA, transformers, tyro and the peers (pip install -e .[peers]); clipsteer
# must be installed, not only on PYTHONPATH, since its `world` dataset is registered as an entry point (session 8 wrote
# a minimal clipsteer-0.1.0.dist-info with that entry_points.txt beside the carried wheels instead).
#   bash benchmarks/peers_gpu.sh OUTDIR [BUDGET_SECONDS] [cells|diagnose]
set -u
out=${1:?usage: peers_gpu.sh OUTDIR [BUDGET_SECONDS]}
budget=${2:-420}
plan=${3:-cells}
work=${PEERS_GPU_WORK:-/tmp/peers_gpu}
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
log="$out/log.txt"
start=$SECONDS

job() {  # job NAME LIMIT_SECONDS COMMAND...: run unless the budget is spent; log its exit status and duration
    local name=$1 limit=$2 left=$((budget - (SECONDS - start)))
    shift 2
    if ((left < 20)); then echo "== $name skipped: budget spent" | tee -a "$log"; return 1; fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s) at $((SECONDS - start))s" | tee -a "$log"
    local t0=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    local rc=$?
    echo "== $name rc=$rc after $((SECONDS - t0))s" | tee -a "$log"
    return $rc
}

store=$work/acts768/blocks.2.resid_post
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv >>"$log" 2>&1
job model 120 python3 -c "from clipsteer.models.testing import random_vit_b32; random_vit_b32(seed=0).save_pretrained('$work/vitb32')"
[ -d "$store" ] || job harvest 240 python3 -m clipsteer.cli harvest --model "$work/vitb32" --sites blocks.2.resid_post \
    --dataset world:train --max-images 4000 --device cuda --workers 8 --out "$work/acts768" || exit 1

importable() {  # importable LIBRARY: whether the module its adapter uses imports here (the log keeps the error)
    python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import peer_adapters as a, importlib
mod = {'dictionary_learning': 'dictionary_learning.trainers.standard', 'sparsify': 'sparsify', 'saev': 'saev.nn'}
a._import_overcomplete() if sys.argv[1] == 'overcomplete' else importlib.import_module(mod[sys.argv[1]])" "$1" \
        >>"$log" 2>&1 || { echo "== $1 does not import: left out" | tee -a "$log"; return 1; }
}
topk_peers=() relu_peers=()
for lib in sparsify dictionary_learning overcomplete; do importable $lib && topk_peers+=("$lib"); done
for lib in dictionary_learning overcomplete saev; do importable $lib && relu_peers+=("$lib"); done

peers() {  # peers NAME LIMIT ARGS...: one peers.py run; its JSON lands in OUTDIR
    local name=$1 limit=$2
    shift 2
    job "$name" "$limit" python3 benchmarks/peers.py --store "$store" --held-out-images 100 --evals 5 --device cuda \
        --out "$work/$name" "$@" && cp "$work/$name".{json,md} "$out/"
}
relu_lambdas=(--lambdas clipsteer=2e-5,5e-5,1e-4,2e-4,4e-4 dictionary_learning=0.03,0.1,0.3,1,3
              overcomplete=0.3,1,3,10,30 saev=1e-4,4e-4,1.6e-3,6.4e-3,2.56e-2)
if [ "$plan" = diagnose ]; then
    peers relu16_1M_recipes 120 --arch relu --expansion 16 --tokens 1000000 \
        --libraries clipsteer clipsteer-ln_mse clipsteer-raw_paper clipsteer-raw_mse \
        --lambdas clipsteer=2e-5,5e-5,1e-4,2e-4 clipsteer-ln_mse=5e-4,1.5e-3,3e-3,6e-3 \
        clipsteer-raw_paper=1e-5,1e-4,1e-3,1e-2 clipsteer-raw_mse=1e-4,1e-3,1e-2,1e-1
    job profile_topk64 60 python3 benchmarks/topk_step_profile.py --store "$store" --device cuda --expansion 64 \
        --warmup 3 --steps 5 --rows 15
    peers relu16_4M_recipes 150 --arch relu --expansion 16 --tokens 4000000 \
        --libraries clipsteer clipsteer-ln_mse clipsteer-raw_mse dictionary_learning \
        --lambdas clipsteer=3e-5,1e-4 clipsteer-ln_mse=1.5e-3,3e-3 clipsteer-raw_mse=1e-3,1e-2 dictionary_learning=1,3
    echo "== done at $((SECONDS - start))s" | tee -a "$log"
    exit 0
fi
has() { [[ " ${*:2} " == *" $1 "* ]]; }
sp=(); has sparsify "${topk_peers[@]}" && sp=(sparsify)
dl=(); has dictionary_learning "${relu_peers[@]}" && dl=(dictionary_learning)
if [ "$plan" = precision ]; then  # session 12: clipsteer in fp32 and under bf16 autocast, beside the fastest peers
    relu=(--arch relu --expansion 16 --libraries clipsteer "${dl[@]}"
          --lambdas clipsteer=2e-5,5e-5,1e-4,1.6e-4 dictionary_learning=0.03,0.1,0.3,1,3)
    topk=(--arch topk --expansion 64 --k 32)
    job anatomy 90 python3 benchmarks/gpu_step_anatomy.py --device cuda
    for precision in no-autocast-bf16 autocast-bf16; do  # the CUDA path users take (pinned batches since session 12)
        job cli_train_$precision 60 python3 -m clipsteer.cli train --store "$store" --out "$work/cli_$precision" \
            --architecture topk --expansion-factor 16 --k 32 --trainer.total-tokens 1000000 --trainer.device cuda \
            --trainer.$precision  # §15, fp32 before: 13 s including start-up, ≈ 450k tok/s
        grep -rh tokens_per_s "$work/cli_$precision" 2>/dev/null | tail -1 | tee -a "$log"
    done
    peers topk64_1M_bf16 80 "${topk[@]}" --tokens 1000000 --autocast-bf16 --libraries clipsteer "${topk_peers[@]}"
    peers relu16_1M_bf16 70 "${relu[@]}" --tokens 1000000 --autocast-bf16
    peers topk64_1M 80 "${topk[@]}" --tokens 1000000 --libraries clipsteer "${sp[@]}"
    peers relu16_1M 70 "${relu[@]}" --tokens 1000000
    job profile_topk64_bf16 50 python3 benchmarks/topk_step_profile.py --store "$store" --device cuda --expansion 64 \
        --warmup 3 --steps 5 --rows 25 --autocast-bf16
    peers topk64_4M_bf16 60 "${topk[@]}" --tokens 4000000 --autocast-bf16 --libraries clipsteer "${sp[@]}"
    peers relu16_4M_bf16 120 "${relu[@]}" --tokens 4000000 --autocast-bf16
    echo "== done at $((SECONDS - start))s" | tee -a "$log"
    exit 0
fi
peers relu16_1M 150 --arch relu --expansion 16 --tokens 1000000 --libraries clipsteer "${dl[@]}" "${relu_lambdas[@]}"
peers topk64_1M 150 --arch topk --expansion 64 --k 32 --tokens 1000000 --libraries clipsteer "${topk_peers[@]}"
for lib in overcomplete saev; do
    has $lib "${relu_peers[@]}" && peers relu16_1M_$lib 90 --arch relu --expansion 16 --tokens 1000000 --libraries $lib \
        "${relu_lambdas[@]}"
done
peers topk64_bf16 60 --arch topk --expansion 64 --k 32 --tokens 409600 --autocast-bf16 --libraries clipsteer "${sp[@]}"
job cli_train 90 python3 -m clipsteer.cli train --store "$store" --out "$work/cli_train" --architecture topk \
    --expansion-factor 16 --k 32 --trainer.total-tokens 1000000 --trainer.device cuda
peers topk64_4M 200 --arch topk --expansion 64 --k 32 --tokens 4000000 --libraries clipsteer "${sp[@]}"
echo "== done at $((SECONDS - start))s" | tee -a "$log"
