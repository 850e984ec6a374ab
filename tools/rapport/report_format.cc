#include "tools/rapport/report_format.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "tools/rapport/flags.h"

namespace rapport::cli {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string Scalar(const Message& m, const FieldDescriptor* f) {
  const Reflection* r = m.GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(r->GetInt32(m, f));
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(r->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(r->GetUInt32(m, f));
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(r->GetUInt64(m, f));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return absl::StrFormat("%.6g", r->GetDouble(m, f));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return absl::StrFormat("%.6g", r->GetFloat(m, f));
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, f) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnum(m, f)->name();
    case FieldDescriptor::CPPTYPE_STRING:
      return r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return "";
}

// The string field that names an element of a repeated message ("RUB" for a
// revenue line, "client.lead" for a stage), or its index.
std::string ElementName(const Message& m, int index) {
  const auto* d = m.GetDescriptor();
  std::vector<std::string> parts;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING && !f->is_repeated()) {
      parts.push_back(m.GetReflection()->GetString(m, f));
    }
  }
  return parts.empty() ? absl::StrCat(index) : absl::StrJoin(parts, ".");
}

void FlattenInto(const Message& m, const std::string& prefix,
                 std::vector<std::pair<std::string, std::string>>* out) {
  const auto* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  // A ratio is one figure: its value, or null.
  if (d->name() == "Ratio") {
    const FieldDescriptor* v = d->FindFieldByName("value");
    out->emplace_back(prefix, r->HasField(m, v) ? Scalar(m, v) : "null");
    return;
  }
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const std::string name = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (f->is_repeated()) {
      if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
      // Per-account lists (health) are not tabular figures.
      if (f->message_type()->name() == "AccountHealth") continue;
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        const Message& e = r->GetRepeatedMessage(m, f, j);
        const std::string base = absl::StrCat(name, ".", ElementName(e, j));
        const auto* ed = e.GetDescriptor();
        for (int k = 0; k < ed->field_count(); ++k) {
          const FieldDescriptor* ef = ed->field(k);
          if (ef->cpp_type() == FieldDescriptor::CPPTYPE_STRING || ef->is_repeated()) continue;
          if (ef->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            FlattenInto(e.GetReflection()->GetMessage(e, ef), base, out);
          } else if (!ef->has_presence() || e.GetReflection()->HasField(e, ef)) {
            out->emplace_back(absl::StrCat(base, ".", ef->name()), Scalar(e, ef));
          } else {
            out->emplace_back(absl::StrCat(base, ".", ef->name()), "null");
          }
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      FlattenInto(r->GetMessage(m, f), name, out);
    } else if (f->has_presence() && !r->HasField(m, f)) {
      out->emplace_back(name, "null");
    } else {
      out->emplace_back(name, Scalar(m, f));
    }
  }
}

std::string CsvCell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

struct Line {
  std::string bucket;
  std::string group;
  std::vector<std::pair<std::string, std::string>> values;
};

std::vector<Line> Lines(const Message& report) {
  std::vector<Line> lines;
  const auto* d = report.GetDescriptor();
  const FieldDescriptor* rows = d->FindFieldByName("rows");
  const Reflection* r = report.GetReflection();
  for (int i = 0; i < r->FieldSize(report, rows); ++i) {
    const Message& row = r->GetRepeatedMessage(report, rows, i);
    const auto* rd = row.GetDescriptor();
    Line line;
    line.bucket = absl::StrCat(
        FormatDate(row.GetReflection()->GetInt64(row, rd->FindFieldByName("bucket_start_us"))),
        "..", FormatDate(row.GetReflection()->GetInt64(row, rd->FindFieldByName("bucket_end_us"))));
    line.group = row.GetReflection()->GetString(row, rd->FindFieldByName("group"));
    FlattenInto(row.GetReflection()->GetMessage(row, rd->FindFieldByName("values")), "",
                &line.values);
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Flatten(const Message& values) {
  std::vector<std::pair<std::string, std::string>> out;
  FlattenInto(values, "", &out);
  return out;
}

std::string ReportAsCsv(const Message& report) {
  const std::vector<Line> lines = Lines(report);
  // Columns: every name in first-seen order (revenue currencies and stages
  // differ between rows).
  std::vector<std::string> columns;
  std::set<std::string> seen;
  for (const Line& l : lines) {
    for (const auto& [name, value] : l.values) {
      if (seen.insert(name).second) columns.push_back(name);
    }
  }
  std::string out = absl::StrCat("bucket,group,", absl::StrJoin(columns, ","), "\n");
  for (const Line& l : lines) {
    std::map<std::string, std::string> by_name(l.values.begin(), l.values.end());
    std::vector<std::string> cells = {CsvCell(l.bucket), CsvCell(l.group)};
    for (const std::string& c : columns) cells.push_back(CsvCell(by_name[c]));
    absl::StrAppend(&out, absl::StrJoin(cells, ","), "\n");
  }
  return out;
}

std::string ReportAsTable(const Message& report) {
  static const char* kMain[] = {
      "partners_active_end", "partners_new",       "partner_growth", "leads", "lead_conversion",
      "clients_new",         "repeat_order_share", "referral_rate",  "nps",   "win_rate",
      "stuck_deals"};
  const std::vector<Line> lines = Lines(report);
  std::vector<std::string> header = {"bucket", "group"};
  for (const char* k : kMain) header.push_back(k);
  std::set<std::string> currencies;
  for (const Line& l : lines) {
    for (const auto& [name, value] : l.values) {
      if (name.rfind("revenue.", 0) == 0 && name.size() > 12 &&
          name.compare(name.size() - 13, 13, ".amount_minor") == 0) {
        currencies.insert(name.substr(8, name.size() - 8 - 13));
      }
    }
  }
  for (const std::string& c : currencies) header.push_back("revenue " + c);
  std::vector<std::vector<std::string>> cells;
  for (const Line& l : lines) {
    std::map<std::string, std::string> by_name(l.values.begin(), l.values.end());
    std::vector<std::string> row = {l.bucket, l.group.empty() ? "-" : l.group};
    for (const char* k : kMain) {
      std::string v = by_name.count(k) ? by_name[k] : "";
      row.push_back(v);
    }
    for (const std::string& c : currencies) {
      auto it = by_name.find("revenue." + c + ".amount_minor");
      row.push_back(it == by_name.end() ? "0" : it->second);
    }
    cells.push_back(std::move(row));
  }
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : cells) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& row) {
    std::string s;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&s, i ? "  " : "",
                      absl::StrFormat("%-*s", static_cast<int>(width[i]), row[i]));
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string out = line(header);
  for (const auto& row : cells) out += line(row);
  return out;
}

}  // namespace rapport::cli
