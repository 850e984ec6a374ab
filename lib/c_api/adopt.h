// Internal to the library and its tests; not part of the C ABI.
#ifndef RAPPORT_LIB_C_API_ADOPT_H_
#define RAPPORT_LIB_C_API_ADOPT_H_

#include <memory>

#include "rapport/engine.h"
#include "rapport/rapport.h"

namespace rapport::c_api {

// A C handle that owns `engine` (not null); free it with
// rapport_engine_destroy. The C ABI opens engines only from a directory and
// options it can name, so a test that needs an engine made in C++ — on a
// fault-injecting Env, say — hands it over here. Hidden: the library exports
// only rapport_* symbols.
rapport_engine* AdoptEngine(std::unique_ptr<Engine> engine);

}  // namespace rapport::c_api

#endif  // RAPPORT_LIB_C_API_ADOPT_H_
