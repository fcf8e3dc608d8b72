#ifndef KVSTORE_TOOLS_CTL_FLAGS_H_
#define KVSTORE_TOOLS_CTL_FLAGS_H_

// Command-line flags parsed the way etcdctl's (cobra/pflag) are, so its command lines work
// unchanged with kvctl and kvbench:
//   --name=value  --name value  -x value  -x=value
//   --bool  --bool=true|false   (a boolean flag never takes the next argument)
//   flags and positional arguments interleave; "--" ends the flags.
// A flag not given on the command line can come from the environment (etcdctl's ETCDCTL_*
// variables) when the flag set is given a prefix: --dial-timeout <- ETCDCTL_DIAL_TIMEOUT.
// Values are checked when parsed: an integer flag refuses "abc", a duration flag takes Go's
// syntax ("2s", "500ms", "1m30s").

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace kvstore::ctl {

class FlagSet {
 public:
  enum class Kind { kBool, kString, kInt, kDuration };

  // `global` flags are listed apart in the usage (etcdctl's GLOBAL OPTIONS).
  void AddBool(const std::string& name, char shorthand, const std::string& help,
               bool global = false);
  void AddString(const std::string& name, char shorthand, const std::string& default_value,
                 const std::string& help, bool global = false);
  void AddInt(const std::string& name, char shorthand, int64_t default_value,
              const std::string& help, bool global = false);
  void AddDuration(const std::string& name, absl::Duration default_value, const std::string& help,
                   bool global = false);

  // Fills unset flags from `environment` ("NAME=value" entries) under `prefix`: a flag
  // --dial-timeout reads PREFIX_DIAL_TIMEOUT. Call after Parse: the command line wins.
  absl::Status ApplyEnvironment(const std::string& prefix,
                                const std::vector<std::string>& environment);

  // Parses `args` into the flags and `positional`. Once `flags_until_positionals` positional
  // arguments were seen, everything after them is positional (a command line to run, whose own
  // flags are not ours: `lock NAME cmd -c x`).
  absl::Status Parse(const std::vector<std::string>& args, std::vector<std::string>* positional,
                     size_t flags_until_positionals = SIZE_MAX);

  bool GetBool(const std::string& name) const;
  const std::string& GetString(const std::string& name) const;
  int64_t GetInt(const std::string& name) const;
  absl::Duration GetDuration(const std::string& name) const;
  // Whether the flag was given (on the command line or in the environment).
  bool Changed(const std::string& name) const;
  bool Has(const std::string& name) const { return flags_.count(name) > 0; }
  // Whether `name` is a flag that takes a value (for a pre-scan that must skip values).
  bool TakesValue(const std::string& name) const;
  bool TakesValue(char shorthand) const;

  // The OPTIONS and GLOBAL OPTIONS sections of a usage text.
  std::string Usage() const;

 private:
  struct Flag {
    Kind kind = Kind::kBool;
    char shorthand = 0;
    std::string value;  // as given or by default; validated for its kind
    std::string default_value;
    std::string help;
    bool global = false;
    bool changed = false;
  };
  void Add(const std::string& name, Flag flag);
  absl::Status Set(const std::string& name, Flag& flag, const std::string& value);
  const Flag& Get(const std::string& name, Kind kind) const;
  std::string NameOf(char shorthand) const;

  std::map<std::string, Flag> flags_;
};

}  // namespace kvstore::ctl

#endif  // KVSTORE_TOOLS_CTL_FLAGS_H_
