#include "lib/state/config.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "lib/data/embedded.h"
#include "lib/grading/grading.h"
#include "rapport/engine.h"

namespace rapport {

absl::StatusOr<v1::EngineConfig> WithDefaults(const v1::EngineConfig& config) {
  v1::EngineConfig out = config;
  if (out.pipelines().pipelines_size() == 0) {
    std::string text(data::DefaultPipelines());
    if (!google::protobuf::TextFormat::ParseFromString(text, out.mutable_pipelines())) {
      return absl::InternalError("the compiled-in default pipelines do not parse");
    }
  }
  if (!out.has_rule_set()) {
    std::string text(data::DefaultPlaybook());
    if (!google::protobuf::TextFormat::ParseFromString(text, out.mutable_rule_set())) {
      return absl::InternalError("the compiled-in default playbook does not parse");
    }
  }
  if (!out.has_grade_policy()) {
    std::string text(data::DefaultGradePolicy());
    if (!google::protobuf::TextFormat::ParseFromString(text, out.mutable_grade_policy())) {
      return absl::InternalError("the compiled-in default grade policy does not parse");
    }
  }
  {
    absl::StatusOr<v1::GradePolicy> policy = GradePolicyWithDefaults(out.grade_policy());
    if (!policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config field 'grade_policy': ", policy.status().message()));
    }
    *out.mutable_grade_policy() = *std::move(policy);
  }
  if (out.client_churn_after_us() < 0 || out.client_churn_after_us() >= kMaxTimeUs) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field 'client_churn_after_us': ", out.client_churn_after_us(),
                     " is outside [0, ", kMaxTimeUs, ")"));
  }
  if (out.client_churn_after_us() == 0) out.set_client_churn_after_us(365 * kMicrosPerDay);
  if (out.default_team_id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field 'default_team_id': longer than ", kMaxIdBytes, " bytes"));
  }
  return out;
}

absl::Status Configure(const v1::EngineConfig& full_config, EngineState* state) {
  absl::StatusOr<Pipelines> pipelines = Pipelines::Build(full_config.pipelines());
  if (!pipelines.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field 'pipelines': ", pipelines.status().message()));
  }
  // The rule set is checked against the pipelines it will move deals in.
  if (absl::Status st = rules::Install(full_config.rule_set(), *pipelines, &state->rules);
      !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config field 'rule_set': ", st.message()));
  }
  state->config = full_config;
  state->pipelines = *std::move(pipelines);
  return absl::OkStatus();
}

}  // namespace rapport
