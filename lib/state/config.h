// The engine configuration: defaults for every unset part, and the derived
// structures the state needs.
#ifndef RAPPORT_LIB_STATE_CONFIG_H_
#define RAPPORT_LIB_STATE_CONFIG_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/state/engine_state.h"
#include "rapport/v1/config.pb.h"

namespace rapport {

// `config` with every unset part replaced by its compiled-in default.
// Errors: INVALID_ARGUMENT naming the field that is out of range.
absl::StatusOr<v1::EngineConfig> WithDefaults(const v1::EngineConfig& config);

// Installs a config that WithDefaults produced into an empty state.
// Errors: INVALID_ARGUMENT naming the pipeline or stage that is wrong.
absl::Status Configure(const v1::EngineConfig& full_config, EngineState* state);

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_CONFIG_H_
