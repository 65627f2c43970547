#!/usr/bin/env bash
# Build a TensorRT engine from a bridge-edge bundle with trtexec (the CLI alternative to
# `bridge-edge build-engine`). Run it ON the target device: engines are not portable.
#
#   export/build_engine_trtexec.sh BUNDLE_DIR [fp16|int8] [MAX_BATCH] [WORKSPACE_MIB]
#
# fp16 builds model.fp16.onnx with --fp16; int8 builds the Q/DQ model.int8.onnx with --int8
# (explicit quantization: the scales are in the graph, so no calibration cache is used).
# Flags follow TensorRT 10 (DEVICES §4.3): --memPoolSize instead of --workspace, and no
# --explicitBatch (TensorRT 8.6's trtexec treats ONNX as explicit batch by itself).
set -euo pipefail

bundle=${1:?usage: $0 BUNDLE_DIR [fp16|int8] [MAX_BATCH] [WORKSPACE_MIB]}
precision=${2:-fp16}
max_batch=${3:-8}
workspace_mib=${4:-1024}

case "$precision" in
  fp16) precision_flags=(--fp16) ;;
  int8) precision_flags=(--int8 --fp16) ;;  # Q/DQ layers in int8, the rest may use fp16
  *) echo "precision must be fp16 or int8, got '$precision'" >&2; exit 2 ;;
esac

trtexec=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}
if [ ! -x "$trtexec" ]; then
  echo "trtexec not found (looked on PATH and at /usr/src/tensorrt/bin/trtexec); install JetPack's tensorrt package" >&2
  exit 3
fi

onnx="$bundle/model.$precision.onnx"
manifest="$bundle/manifest.json"
[ -f "$onnx" ] || { echo "$onnx not found; is $bundle a bundle with $precision?" >&2; exit 2; }

# Input name and window length come from the manifest (python3 is on every JetPack).
read -r input_name n_samples < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(m["onnx"]["inputs"][0]["name"], int(round(m["input"]["fs"] * m["input"]["window_s"])))
' "$manifest")

engine="$bundle/model.$precision.b${max_batch}.trtexec.engine"
"$trtexec" \
  --onnx="$onnx" \
  --saveEngine="$engine" \
  --minShapes="${input_name}:1x${n_samples}" \
  --optShapes="${input_name}:1x${n_samples}" \
  --maxShapes="${input_name}:${max_batch}x${n_samples}" \
  "${precision_flags[@]}" \
  --memPoolSize=workspace:"${workspace_mib}" \
  --skipInference
echo "wrote $engine"
