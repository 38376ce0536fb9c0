/* The Python extension module of one variant: PyInit_<namespace>, compiled with the
 * Python limited API (abi3) so one .so serves every CPython >= 3.9. Importing it registers
 * the binding's op implementations under the namespace through tk_register_impls, which the
 * project's torch binding defines. TORCH_EXTENSION_NAME comes from the builder (-D). */
#define Py_LIMITED_API 0x03090000
#include <Python.h>

#define TK_STR_(x) #x
#define TK_STR(x) TK_STR_(x)
#define TK_CAT_(a, b) a##b
#define TK_CAT(a, b) TK_CAT_(a, b)

/* NULL on success, else a message with static storage. Hidden, so each loaded variant's
 * module init binds to its own library's registration, never another variant's. */
__attribute__((visibility("hidden"))) const char* tk_register_impls(const char* ns);

static struct PyModuleDef tk_module = {
    PyModuleDef_HEAD_INIT, TK_STR(TORCH_EXTENSION_NAME), NULL, -1, NULL,
};

PyMODINIT_FUNC TK_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) {
  const char* error = tk_register_impls(TK_STR(TORCH_EXTENSION_NAME));
  if (error != NULL) {
    PyErr_SetString(PyExc_ImportError, error);
    return NULL;
  }
  return PyModule_Create(&tk_module);
}
