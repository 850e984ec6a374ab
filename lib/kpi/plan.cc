// Validating a KPI query and laying out its buckets in its time zone.
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "lib/kpi/query.h"
#include "rapport/engine.h"

namespace rapport::kpi {
namespace {

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("KPI query: ", what));
}

// The first instant of a local civil time: a time skipped by a DST jump
// starts at the jump.
int64_t Instant(const absl::CivilSecond& c, const absl::TimeZone& tz) {
  const absl::TimeZone::TimeInfo info = tz.At(c);
  return absl::ToUnixMicros(info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans : info.pre);
}

absl::CivilSecond Floor(const absl::CivilSecond& c, v1::Bucket b) {
  switch (b) {
    case v1::BUCKET_DAY:
      return absl::CivilDay(c);
    case v1::BUCKET_WEEK: {
      absl::CivilDay d(c);
      if (absl::GetWeekday(d) != absl::Weekday::monday)
        d = absl::PrevWeekday(d, absl::Weekday::monday);
      return d;
    }
    case v1::BUCKET_MONTH:
      return absl::CivilMonth(c);
    case v1::BUCKET_QUARTER: {
      absl::CivilMonth m(c);
      return absl::CivilMonth(m.year(), (m.month() - 1) / 3 * 3 + 1);
    }
    default:
      return absl::CivilYear(c);
  }
}

absl::CivilSecond Next(const absl::CivilSecond& c, v1::Bucket b) {
  switch (b) {
    case v1::BUCKET_DAY:
      return absl::CivilDay(c) + 1;
    case v1::BUCKET_WEEK:
      return absl::CivilDay(c) + 7;
    case v1::BUCKET_MONTH:
      return absl::CivilMonth(c) + 1;
    case v1::BUCKET_QUARTER:
      return absl::CivilMonth(c) + 3;
    default:
      return absl::CivilYear(c) + 1;
  }
}

}  // namespace

absl::StatusOr<Plan> MakePlan(const v1::KpiQuery& q) {
  if (q.start_us() < kMinTimeUs || q.end_us() > kMaxTimeUs || q.start_us() >= q.end_us()) {
    return Bad(absl::StrCat("the period [start_us, end_us) = [", q.start_us(), ", ", q.end_us(),
                            ") must satisfy 0 <= start_us < end_us <= ", kMaxTimeUs));
  }
  if (q.as_of_us() < 0 || q.as_of_us() > kMaxTimeUs) {
    return Bad(absl::StrCat("as_of_us ", q.as_of_us(), " is outside [0, ", kMaxTimeUs, "]"));
  }
  if (!v1::Bucket_IsValid(q.bucket()))
    return Bad(absl::StrCat("bucket ", q.bucket(), " is unknown"));
  if (!v1::GroupBy_IsValid(q.group_by())) {
    return Bad(absl::StrCat("group_by ", q.group_by(), " is unknown"));
  }
  absl::TimeZone tz = absl::UTCTimeZone();
  if (!q.time_zone().empty() && !absl::LoadTimeZone(q.time_zone(), &tz)) {
    return Bad(absl::StrCat("time_zone '", q.time_zone(), "' is not a known IANA time zone"));
  }
  Plan plan;
  plan.query = q;
  plan.as_of = q.as_of_us() == 0 ? q.end_us() : q.as_of_us();
  plan.query.set_as_of_us(plan.as_of);
  plan.bounds.push_back(q.start_us());
  if (q.bucket() != v1::BUCKET_NONE) {
    absl::CivilSecond c =
        Floor(absl::ToCivilSecond(absl::FromUnixMicros(q.start_us()), tz), q.bucket());
    for (;;) {
      c = Next(c, q.bucket());
      const int64_t x = Instant(c, tz);
      if (x >= q.end_us()) break;
      if (x <= plan.bounds.back()) continue;
      if (static_cast<int64_t>(plan.bounds.size()) >= kMaxBuckets) {
        return Bad(absl::StrCat("the period spans more than ", kMaxBuckets, " buckets"));
      }
      plan.bounds.push_back(x);
    }
  }
  plan.bounds.push_back(q.end_us());
  return plan;
}

}  // namespace rapport::kpi
