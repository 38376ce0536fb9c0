// corpus dummy: a CPU kernel source
