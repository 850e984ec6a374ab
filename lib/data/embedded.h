// Data files compiled into the library (lib/data/*.textproto). The host can
// replace each through EngineConfig.
#ifndef RAPPORT_LIB_DATA_EMBEDDED_H_
#define RAPPORT_LIB_DATA_EMBEDDED_H_

#include "absl/strings/string_view.h"

namespace rapport::data {

// rapport.v1.PipelineSet: the partner and client pipelines of SPEC §3.
absl::string_view DefaultPipelines();

// rapport.v1.GradePolicy: the default grade ladder of SPEC §6.
absl::string_view DefaultGradePolicy();

// rapport.v1.RuleSet: the default playbook of SPEC §4 (P1-P3, C1-C6, M1, R1).
absl::string_view DefaultPlaybook();

}  // namespace rapport::data

#endif  // RAPPORT_LIB_DATA_EMBEDDED_H_
