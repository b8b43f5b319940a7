#!/usr/bin/env bash
# README command 1: the main job end to end on the shipped example.
# Trains the digits CNN (seconds, cached), converts it to ONNX, ONNX int8, TFLite and TFLite int8,
# checks parity on 450 held-out digits, benchmarks each artifact, prints the table and writes
# out/digits_cnn/results.jsonl and out/digits_cnn/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/edgekit run examples/digits_cnn.py:build --targets onnx,onnx-int8,tflite,tflite-int8 --data digits "$@"
