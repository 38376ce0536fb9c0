#pragma once
#include <cstdint>
void scale_cpu(float* out, const float* x, int64_t n, float factor);
