// The extension's registration entry point. Each kernel's torch-facing code lives in
// torch-ext/<kernel>_binding.cpp (shared helpers: binding.h); the schemas live in
// transformer_kernels/_schemas.py.
//
// The op namespace is not compiled in: the builder's generated module init (PyInit_<ns>)
// calls tk_register_impls(ns), so these object files are the same for every namespace and a
// changed kernel source recompiles that source and relinks, nothing more.

#include <memory>
#include <string>
#include <vector>

#include "binding.h"

namespace tk::binding {

std::string& op_namespace() {
  static std::string ns;
  return ns;
}

}  // namespace tk::binding

namespace {

using tk::binding::KernelBinding;

std::vector<KernelBinding> kernel_bindings() {
  return {tk::binding::rmsnorm_binding(), tk::binding::geglu_binding(),
          tk::binding::rope_binding(), tk::binding::adaln_binding(),
          tk::binding::flash_attn_binding()};
}

bool already_registered(const std::string& ns) {
  // A second copy of the same build (same namespace) loaded from another path finds the
  // first copy's kernels; registering again would override them with identical ones.
  const auto op = c10::Dispatcher::singleton().findOp({ns + "::rms_norm_fwd_out", ""});
  return op.has_value() && op->hasKernelForDispatchKey(c10::DispatchKey::CPU);
}

// Live for the whole process: destroying a Library deregisters its kernels.
std::vector<std::unique_ptr<torch::Library>>& libraries() {
  static std::vector<std::unique_ptr<torch::Library>> libs;
  return libs;
}

torch::Library& new_library(const char* ns, c10::DispatchKey key) {
  libraries().push_back(
      std::make_unique<torch::Library>(torch::Library::IMPL, ns, key, __FILE__, __LINE__));
  return *libraries().back();
}

std::string& last_error() {
  static std::string message;
  return message;
}

}  // namespace

// Called once from PyInit_<ns>. Returns nullptr on success, else an error message.
extern "C" const char* tk_register_impls(const char* ns) {
  try {
    if (already_registered(ns)) return nullptr;
    tk::binding::op_namespace() = ns;
    std::vector<c10::DispatchKey> device_keys{c10::DispatchKey::CPU};
#ifdef TK_WITH_CUDA
    device_keys.push_back(c10::DispatchKey::CUDA);
#endif
    const std::vector<KernelBinding> bindings = kernel_bindings();
    for (const c10::DispatchKey key : device_keys) {
      torch::Library& lib = new_library(ns, key);
      for (const KernelBinding& binding : bindings) binding.out_ops(lib);
    }
    torch::Library& functional = new_library(ns, c10::DispatchKey::CompositeExplicitAutograd);
    torch::Library& autograd = new_library(ns, c10::DispatchKey::Autograd);
    for (const KernelBinding& binding : bindings) {
      binding.functional_ops(functional);
      if (binding.autograd != nullptr) binding.autograd(autograd);
    }
    return nullptr;
  } catch (const std::exception& error) {
    last_error() = error.what();
    return last_error().c_str();
  }
}
