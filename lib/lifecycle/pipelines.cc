#include "lib/lifecycle/pipelines.h"

#include "absl/strings/str_cat.h"
#include "rapport/engine.h"

namespace rapport {

absl::StatusOr<Pipelines> Pipelines::Build(const v1::PipelineSet& set) {
  Pipelines out;
  if (set.pipelines_size() == 0) {
    return absl::InvalidArgumentError("pipelines: at least one pipeline is required");
  }
  for (int p = 0; p < set.pipelines_size(); ++p) {
    const v1::Pipeline& pl = set.pipelines(p);
    const std::string where = absl::StrCat("pipelines[", p, "] '", pl.id(), "'");
    if (pl.id().empty() || pl.id().size() > kMaxIdBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": field 'id' must be 1..", kMaxIdBytes, " bytes"));
    }
    if (out.by_id_.contains(pl.id())) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": field 'id' is repeated"));
    }
    if (pl.stages_size() == 0 || pl.stages_size() > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": field 'stages' must hold 1..64 stages"));
    }
    PipelineInfo info;
    info.pipeline = pl;
    for (int s = 0; s < pl.stages_size(); ++s) {
      const v1::Stage& st = pl.stages(s);
      const std::string swhere = absl::StrCat(where, " stage ", s, " '", st.id(), "'");
      if (st.id().empty() || st.id().size() > kMaxIdBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(swhere, ": field 'id' must be 1..", kMaxIdBytes, " bytes"));
      }
      if (!info.stage_index.emplace(st.id(), s).second) {
        return absl::InvalidArgumentError(absl::StrCat(swhere, ": field 'id' is repeated"));
      }
      info.stage_keys.push_back(
          PipelineInfo::StageKey{PipelineInfo::StageHead(st.id()), st.id().size()});
      if (st.sla_us() < 0) {
        return absl::InvalidArgumentError(absl::StrCat(swhere, ": field 'sla_us' is negative"));
      }
      if (st.won() && st.lost()) {
        return absl::InvalidArgumentError(
            absl::StrCat(swhere, ": fields 'won' and 'lost' are both set"));
      }
      if (st.won() && info.won_stage < 0) info.won_stage = s;
    }
    if (pl.default_for() != v1::ACCOUNT_KIND_UNSPECIFIED &&
        out.DefaultFor(pl.default_for()) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": field 'default_for': another pipeline is already the default for ",
                       v1::AccountKind_Name(pl.default_for())));
    }
    out.by_id_.emplace(pl.id(), static_cast<int>(out.pipelines_.size()));
    out.pipelines_.push_back(std::move(info));
  }
  return out;
}

const PipelineInfo* Pipelines::Find(absl::string_view id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &pipelines_[it->second];
}

const PipelineInfo* Pipelines::DefaultFor(v1::AccountKind kind) const {
  for (const PipelineInfo& p : pipelines_) {
    if (p.pipeline.default_for() == kind) return &p;
  }
  return nullptr;
}

}  // namespace rapport
