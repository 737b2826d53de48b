#pragma once
/// @file drt.hpp
/// Umbrella header: everything drt offers.

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/tensor.hpp"
#include "io/image.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "layers/activation.hpp"
#include "layers/attention.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/decode_head.hpp"
#include "layers/gemm.hpp"
#include "layers/layer_norm.hpp"
#include "layers/linear.hpp"
#include "layers/mix_ffn.hpp"
#include "layers/patch_embed.hpp"
#include "layers/pooling.hpp"
#include "layers/resize.hpp"
#include "layers/softmax.hpp"
#include "models/segformer.hpp"
