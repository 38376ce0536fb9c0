#include "scale.h"
void scale_cpu(float* out, const float* x, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * factor;
}
