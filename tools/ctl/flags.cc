#include "tools/ctl/flags.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/raft/check.h"

namespace kvstore::ctl {
namespace {

// Go's time.ParseDuration accepts a bare "0"; absl::ParseDuration does too, and both take
// "1m30s" and "500ms", so Go-style values from etcdctl scripts parse unchanged.
absl::Status Validate(FlagSet::Kind kind, const std::string& display_name,
                      const std::string& value) {
  switch (kind) {
    case FlagSet::Kind::kBool:
      if (value == "true" || value == "false") return absl::OkStatus();
      break;
    case FlagSet::Kind::kInt: {
      int64_t parsed = 0;
      if (absl::SimpleAtoi(value, &parsed)) return absl::OkStatus();
      break;
    }
    case FlagSet::Kind::kDuration: {
      absl::Duration parsed;
      if (absl::ParseDuration(value, &parsed)) return absl::OkStatus();
      break;
    }
    case FlagSet::Kind::kString:
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid argument \"", value, "\" for \"", display_name, "\" flag"));
}

}  // namespace

void FlagSet::Add(const std::string& name, Flag flag) {
  RAFT_CHECK(flags_.count(name) == 0) << "flag --" << name << " declared twice";
  flag.value = flag.default_value;
  flags_[name] = std::move(flag);
}

void FlagSet::AddBool(const std::string& name, char shorthand, const std::string& help,
                      bool global) {
  Add(name, Flag{Kind::kBool, shorthand, "", "false", help, global});
}

void FlagSet::AddString(const std::string& name, char shorthand, const std::string& default_value,
                        const std::string& help, bool global) {
  Add(name, Flag{Kind::kString, shorthand, "", default_value, help, global});
}

void FlagSet::AddInt(const std::string& name, char shorthand, int64_t default_value,
                     const std::string& help, bool global) {
  Add(name, Flag{Kind::kInt, shorthand, "", absl::StrCat(default_value), help, global});
}

void FlagSet::AddDuration(const std::string& name, absl::Duration default_value,
                          const std::string& help, bool global) {
  Add(name, Flag{Kind::kDuration, 0, "", absl::FormatDuration(default_value), help, global});
}

absl::Status FlagSet::Set(const std::string& name, Flag& flag, const std::string& value) {
  if (absl::Status s = Validate(flag.kind, "--" + name, value); !s.ok()) return s;
  flag.value = value;
  flag.changed = true;
  return absl::OkStatus();
}

std::string FlagSet::NameOf(char shorthand) const {
  for (const auto& [name, flag] : flags_) {
    if (flag.shorthand == shorthand) return name;
  }
  return "";
}

bool FlagSet::TakesValue(const std::string& name) const {
  auto it = flags_.find(name);
  return it != flags_.end() && it->second.kind != Kind::kBool;
}

bool FlagSet::TakesValue(char shorthand) const {
  const std::string name = NameOf(shorthand);
  return !name.empty() && TakesValue(name);
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args,
                            std::vector<std::string>* positional, size_t flags_until_positionals) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (positional->size() >= flags_until_positionals) {
      positional->insert(positional->end(), args.begin() + i, args.end());
      return absl::OkStatus();
    }
    if (arg == "--") {
      positional->insert(positional->end(), args.begin() + i + 1, args.end());
      return absl::OkStatus();
    }
    // A lone "-" is an argument (stdin, by convention), as is anything not starting with '-'.
    if (arg.size() < 2 || arg[0] != '-') {
      positional->push_back(arg);
      continue;
    }
    std::string name;
    std::string value;
    bool has_value = false;
    std::string display;
    if (arg[1] == '-') {
      const std::string body = arg.substr(2);
      const size_t eq = body.find('=');
      name = body.substr(0, eq);
      if (eq != std::string::npos) {
        value = body.substr(eq + 1);
        has_value = true;
      }
      display = "--" + name;
      if (flags_.count(name) == 0) return absl::InvalidArgumentError("unknown flag: " + display);
    } else {
      const char shorthand = arg[1];
      name = NameOf(shorthand);
      if (name.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown shorthand flag: '", std::string(1, shorthand), "' in ", arg));
      }
      if (arg.size() > 2) {
        value = arg.substr(arg[2] == '=' ? 3 : 2);
        has_value = true;
      }
      display = "-" + std::string(1, shorthand);
    }
    Flag& flag = flags_[name];
    if (flag.kind == Kind::kBool) {
      if (!has_value) value = "true";
    } else if (!has_value) {
      if (i + 1 == args.size()) {
        return absl::InvalidArgumentError("flag needs an argument: " + display);
      }
      value = args[++i];
    }
    if (absl::Status s = Set(name, flag, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status FlagSet::ApplyEnvironment(const std::string& prefix,
                                       const std::vector<std::string>& environment) {
  for (auto& [name, flag] : flags_) {
    if (flag.changed) continue;
    const std::string key = absl::StrCat(
        prefix, "_", absl::AsciiStrToUpper(absl::StrReplaceAll(name, {{"-", "_"}})), "=");
    for (const std::string& entry : environment) {
      if (!absl::StartsWith(entry, key)) continue;
      if (absl::Status s = Set(name, flag, entry.substr(key.size())); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(s.message(), " (from ", key.substr(0, key.size() - 1), ")"));
      }
    }
  }
  return absl::OkStatus();
}

const FlagSet::Flag& FlagSet::Get(const std::string& name, Kind kind) const {
  auto it = flags_.find(name);
  RAFT_CHECK(it != flags_.end()) << "no flag --" << name;
  RAFT_CHECK(it->second.kind == kind) << "flag --" << name << " read as another kind";
  return it->second;
}

bool FlagSet::GetBool(const std::string& name) const {
  return Get(name, Kind::kBool).value == "true";
}

const std::string& FlagSet::GetString(const std::string& name) const {
  return Get(name, Kind::kString).value;
}

int64_t FlagSet::GetInt(const std::string& name) const {
  int64_t value = 0;
  RAFT_CHECK(absl::SimpleAtoi(Get(name, Kind::kInt).value, &value));
  return value;
}

absl::Duration FlagSet::GetDuration(const std::string& name) const {
  absl::Duration value;
  RAFT_CHECK(absl::ParseDuration(Get(name, Kind::kDuration).value, &value));
  return value;
}

bool FlagSet::Changed(const std::string& name) const {
  auto it = flags_.find(name);
  return it != flags_.end() && it->second.changed;
}

std::string FlagSet::Usage() const {
  // Two columns: the flag as etcdctl shows it ("-w, --write-out="simple""), then its help.
  std::vector<std::pair<std::string, std::string>> local;
  std::vector<std::pair<std::string, std::string>> global;
  size_t width = 0;
  for (const auto& [name, flag] : flags_) {
    std::string left = flag.shorthand != 0
                           ? absl::StrCat("  -", std::string(1, flag.shorthand), ", --", name)
                           : absl::StrCat("      --", name);
    if (flag.kind == Kind::kBool) {
      absl::StrAppend(&left, "[=", flag.default_value, "]");
    } else if (flag.kind == Kind::kString) {
      absl::StrAppend(&left, "=\"", flag.default_value, "\"");
    } else {
      absl::StrAppend(&left, "=", flag.default_value);
    }
    width = std::max(width, left.size());
    (flag.global ? global : local).emplace_back(std::move(left), flag.help);
  }
  std::string out;
  auto section = [&](const char* title, const auto& lines) {
    if (lines.empty()) return;
    absl::StrAppend(&out, title, ":\n");
    for (const auto& [left, help] : lines) {
      absl::StrAppend(&out, left, std::string(width - left.size() + 2, ' '), help, "\n");
    }
    out += "\n";
  };
  section("OPTIONS", local);
  section("GLOBAL OPTIONS", global);
  return out;
}

}  // namespace kvstore::ctl
