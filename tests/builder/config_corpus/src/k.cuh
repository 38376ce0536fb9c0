// corpus dummy: a CUDA header
