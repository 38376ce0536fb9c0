/* Keeps compiled variants within manylinux_2_28 (glibc <= 2.28) when the build machine has a
 * newer glibc. libstdc++ headers of gcc >= 11 read glibc's `__libc_single_threaded`
 * (GLIBC_2.32) to skip atomic reference counting in single-threaded processes. This hidden
 * definition satisfies those references inside the extension itself; its value 0 means
 * "maybe multi-threaded", so the atomic path is always taken, which is always correct. */
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
