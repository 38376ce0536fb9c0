// corpus dummy: the torch binding
