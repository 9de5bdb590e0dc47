// `import sqish_ext.<name>` loads a compiled library whose static initialisers
// register its ops or kernels with the dispatcher; the module itself is empty.
// Only the limited Python API (abi3) is used, so one wheel serves every CPython.
#pragma once

#if defined(SQISH_PYTHON_MODULE)
#include <Python.h>

#define SQISH_PYTHON_MODULE_INIT(name)                                          \
  PyMODINIT_FUNC PyInit_##name() {                                              \
    static PyModuleDef module = {PyModuleDef_HEAD_INIT, #name, nullptr, -1, nullptr}; \
    return PyModule_Create(&module);                                            \
  }
#else
#define SQISH_PYTHON_MODULE_INIT(name)
#endif
