#!/usr/bin/env bash
# Hostile inputs and failing outputs against the drt program (issue 16): each scenario feeds one bad
# input or makes one write fail, and checks the exit code, the exact error, and that no output file
# (nor a temporary) is left behind.
#   hostile.sh DRT_BINARY SCENARIO SOURCE_DIR
set -uo pipefail
drt=$(realpath "$1") scenario=$2 src=$(realpath "$3")
model="$src/data/models/segformer-b0-camvid"
image="$src/data/images/0016E5_07959.png"
work=$(mktemp -d "${TMPDIR:-/tmp}/drt_hostile.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

fail() { echo "FAIL [$scenario]: $*" >&2; exit 1; }

# run_drt EXPECTED_EXIT ARGS...: runs drt, keeps stdout+stderr in $out.
run_drt() {
  local want=$1; shift
  out=$("$drt" "$@" 2>&1); local rc=$?
  echo "$out"
  [ "$rc" = "$want" ] || fail "exit code $rc, expected $want"
}
# run_drt_full_disk KIB EXPECTED_EXIT ARGS...: the same on a "full disk": writes past KIB KiB fail
# with EFBIG (ulimit -f; SIGXFSZ ignored, as a daemon would).
run_drt_full_disk() {
  local kib=$1 want=$2; shift 2
  out=$( (trap '' XFSZ; ulimit -f "$kib"; exec "$drt" "$@") 2>&1); local rc=$?
  echo "$out"
  [ "$rc" = "$want" ] || fail "exit code $rc, expected $want"
}
expect() { grep -qF -- "$1" <<<"$out" || fail "output lacks: $1"; }
expect_re() { grep -qE -- "$1" <<<"$out" || fail "output does not match: $1"; }
# No file of these names, and no temporary of drt's, in the folder.
expect_absent() {
  for f in "$@"; do [ ! -e "$f" ] || fail "'$f' was left behind"; done
  ! ls -A . | grep -q 'drt-tmp' || fail "a temporary file was left behind: $(ls -A .)"
}

# make_st FILE HEADER_JSON DATA_BYTES: a safetensors file whose data section is DATA_BYTES zero bytes.
make_st() {
  local file=$1 header=$2 n=$3 len
  len=${#header}
  printf "$(printf '\\x%02x' $((len & 255)) $(((len >> 8) & 255)) 0 0 0 0 0 0)" >"$file"
  printf '%s' "$header" >>"$file"
  head -c "$n" /dev/zero >>"$file"
}
# put_nan FILE BYTE_OFFSET: write a NaN there (00 00 C0 7F: NaN in F32, and two F16/BF16 values the second of which is NaN).
put_nan() { printf '\x00\x00\xc0\x7f' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
data_start() { echo $((8 + $(od -An -tu8 -N8 "$1" | tr -d ' '))); }

# tensor_offset FILE NAME: the byte offset of tensor NAME's data in FILE.
tensor_offset() {
  local start rel
  start=$(data_start "$1")
  rel=$(head -c "$start" "$1" | grep -ao "\"$2\":{[^}]*}" | grep -o 'data_offsets":\[[0-9]*' | grep -o '[0-9]*$')
  [ -n "$rel" ] || fail "no tensor '$2' in $1"
  echo $((start + rel))
}

case "$scenario" in
  run_shape_overflow)  # issue 16's reproducer: dimensions whose product wraps past 2^64
    make_st px.safetensors '{"pixel_values":{"dtype":"F32","shape":[4611686018427387905,3,32,32],"data_offsets":[0,12288]}}' 12288
    run_drt 1 run "$model" --input px.safetensors --output out.safetensors
    expect "drt: error: safetensors 'px.safetensors': tensor 'pixel_values' has shape [4611686018427387905,3,32,32] whose element count overflows 64 bits"
    expect_absent out.safetensors ;;
  run_header_short_by_one)  # the JSON's space padding absorbs a length one byte short: every tensor would be shifted
    header='{"pixel_values":{"dtype":"F32","shape":[1,3,32,32],"data_offsets":[0,12288]}}  '
    make_st px.safetensors "$header" 12288
    printf "$(printf '\\x%02x' $(( (${#header} - 1) & 255 )) $(( ((${#header} - 1) >> 8) & 255 )))" |
      dd of=px.safetensors bs=1 seek=0 conv=notrunc status=none
    run_drt 1 run "$model" --input px.safetensors --output out.safetensors
    expect "drt: error: safetensors 'px.safetensors': the data section is 12289 bytes but the tensors cover 12288 (trailing bytes after tensor 'pixel_values'"
    expect_absent out.safetensors ;;
  run_input_directory)
    mkdir in.safetensors
    run_drt 1 run "$model" --input in.safetensors --output out.safetensors
    expect "drt: error: safetensors 'in.safetensors': cannot open file (it is a directory)"
    expect_absent out.safetensors ;;
  weights_directory)  # model.safetensors is a folder
    mkdir m && cp "$model/config.json" m/ && mkdir m/model.safetensors
    run_drt 1 segment m "$image" --out mask.png
    expect "drt: error: safetensors 'm/model.safetensors': cannot open file (it is a directory)"
    expect_absent mask.png ;;
  weights_nan)  # one NaN weight: refused, naming the tensor; --allow-nonfinite loads it
    mkdir m && cp "$model/config.json" m/ && cp "$model/model.safetensors" m/
    put_nan m/model.safetensors "$(tensor_offset m/model.safetensors decode_head.classifier.bias)"
    run_drt 1 segment m "$image" --out mask.png
    expect_re "drt: error: safetensors 'm/model.safetensors': tensor 'decode_head.classifier.bias' \[11\] holds 1 non-finite value \(first: nan at element [01]\); refused unless non-finite values are allowed \(--allow-nonfinite\)"
    expect_absent mask.png
    run_drt 0 segment m "$image" --out mask.png --allow-nonfinite  # loads; the NaN logits are flagged
    expect_re "drt segment: warning: logits holds [0-9]+ non-finite values of [0-9]+ \(NaN or infinity\): the result is not meaningful"
    [ -s mask.png ] || fail "no mask with --allow-nonfinite" ;;
  run_input_nan)  # NaN in the input: a warning, not a silent one-class output
    make_st px.safetensors '{"pixel_values":{"dtype":"F32","shape":[1,3,32,32],"data_offsets":[0,12288]}}' 12288
    put_nan px.safetensors "$(data_start px.safetensors)"
    run_drt 0 run "$model" --input px.safetensors --output out.safetensors
    expect "drt run: warning: input 'px.safetensors' tensor 'pixel_values' holds 1 non-finite value of 3072 (NaN or infinity): the result is not meaningful"
    [ -s out.safetensors ] || fail "no output" ;;
  run_full_disk)  # the output does not fit: an error naming it, no partial file
    run_drt_full_disk 64 1 run "$model" --input "$model/case_camvid_val1.safetensors" --output out.safetensors
    expect "drt: error: safetensors 'out.safetensors': write failed after"
    expect "(File too large); no file was left behind"
    expect_absent out.safetensors ;;
  segment_overlay_full_disk)  # the mask fits, the overlay does not: neither is left
    run_drt_full_disk 128 1 segment "$model" "$image" --out mask.png --overlay overlay.png
    expect "drt: error: png 'overlay.png': write failed after"
    expect_absent mask.png overlay.png ;;
  segment_overlay_unwritable)  # refused before the model is even loaded
    run_drt 1 segment "$model" "$image" --out mask.png --overlay no_such_dir/overlay.png
    expect "drt: error: png 'no_such_dir/overlay.png': cannot open for writing (No such file or directory)"
    expect_absent mask.png ;;
  budget_overlay_full_disk)
    run_drt_full_disk 128 1 segment "$model" "$image" --lut "$model/lut.json" --budget-ms 1000 --out mask.png --overlay overlay.png
    expect "drt: error: png 'overlay.png': write failed after"
    expect_absent mask.png overlay.png ;;
  eval_json_full_disk)
    run_drt_full_disk 1 1 eval "$model" --data "$src/data" --ignore-index 11 --json eval.json
    expect "drt: error: json 'eval.json': write failed after"
    expect_absent eval.json ;;
  eval_ignore_index_zero)  # 0 is a valid label to ignore: accepted (CamVid's void 11 is then out of range)
    run_drt 1 eval "$model" --data "$src/data" --ignore-index 0 --limit 1
    expect "is outside 0..10 (ignore index 0)" ;;
  eval_ignore_index_range)
    run_drt 2 eval "$model" --data "$src/data" --ignore-index 256
    expect "drt eval: option '--ignore-index' expects a label index in [0, 255], got '256'" ;;
  sweep_out_unwritable)  # known before any measuring
    run_drt 1 sweep "$model" --data "$src/data" --out no_such_dir/lut.json
    expect "drt: error: lut 'no_such_dir/lut.json': cannot open for writing (No such file or directory)"
    grep -q "paths" <<<"$out" && fail "sweep measured before refusing the output"
    true ;;
  image_too_many_pixels)  # a 45-byte PNG declaring 8000 x 8000
    run_drt 1 segment "$model" "$src/tests/data/hostile/declares_8000x8000.png" --out mask.png
    expect "drt: error: image '$src/tests/data/hostile/declares_8000x8000.png': 8000x8000 (HxW) is more than the limit of 16777216 pixels (raise the limit to allow it)"
    expect_absent mask.png ;;
  image_pixel_limit_option)  # the limit is an option: the real 360x480 frame under a 100000-pixel limit
    run_drt 1 segment "$model" "$image" --out mask.png --max-pixels 100000
    expect "is more than the limit of 100000 pixels"
    expect_absent mask.png ;;
  size_too_large)
    run_drt 1 segment "$model" "$image" --size 20000x20000 --out mask.png
    expect "drt: error: --size 20000x20000: 20000x20000 (HxW) is more than the limit of 16777216 pixels (raise the limit to allow it)"
    expect_absent mask.png ;;
  config_wrapping_int)  # 2^31 must not wrap to a stage without blocks
    mkdir m && sed -z 's/"depths": *\[[^]]*\]/"depths": [2147483648, 2, 2, 2]/' "$model/config.json" >m/config.json
    grep -q 2147483648 m/config.json || fail "could not edit the config"
    cp "$model/model.safetensors" m/
    run_drt 1 segment m "$image" --out mask.png
    expect "drt: error: config 'm/config.json': field 'depths' must hold integers in [1, 2^30], got [2147483648,2,2,2]" ;;
  config_wrong_type)  # a number for hidden_act: the file and the field are named
    mkdir m && sed 's/"hidden_act": *"[a-z]*"/"hidden_act": 7/' "$model/config.json" >m/config.json
    grep -q '"hidden_act": 7' m/config.json || fail "could not edit the config"
    cp "$model/model.safetensors" m/
    run_drt 1 segment m "$image" --out mask.png
    expect "drt: error: config 'm/config.json': field 'hidden_act' must be a string, got 7" ;;
  lut_wrong_type)  # a string for input.height
    sed 's/"height": *[0-9]*/"height": "360"/' "$model/lut.json" >lut.json
    grep -q '"height": "360"' lut.json || fail "could not edit the lut"
    run_drt 1 segment "$model" "$image" --lut lut.json --budget-ms 100 --out mask.png
    expect "drt: error: lut 'lut.json': input: field 'height' must be an integer in [1, 1048576], got \"360\"" ;;
  lut_version_wraps)
    sed 's/"version": *1/"version": 1099511627777/' "$model/lut.json" >lut.json
    run_drt 1 segment "$model" "$image" --lut lut.json --budget-ms 100 --out mask.png
    expect "drt: error: lut 'lut.json': version 1099511627777 is not supported (this drt reads version 1)" ;;
  lut_entry_bad_path)  # the error names the table, the entry index and the entry
    sed '0,/"path": *"depths=[^"]*"/s//"path": "fuse_in=99999"/' "$model/lut.json" >lut.json
    grep -q 'fuse_in=99999' lut.json || fail "could not edit the lut"
    run_drt 1 segment "$model" "$image" --lut lut.json --budget-ms 100000 --out mask.png
    expect_re "drt: error: lut 'lut.json': entry [0-9]+ \(segformer-b0-camvid 'fuse_in=99999'\): path 'fuse_in=99999': fuse_in=99999 must be between 1 and [0-9]+" ;;
  *) fail "unknown scenario" ;;
esac
echo "PASS [$scenario]"
