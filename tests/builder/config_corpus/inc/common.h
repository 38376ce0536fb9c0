// corpus dummy: a shared header
