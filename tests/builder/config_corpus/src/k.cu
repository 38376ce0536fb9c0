// corpus dummy: a CUDA kernel source
