// kvctl: the command-line client of the key-value store, with etcdctl's verbs, flags and output
// shapes (-w simple|json|table), so etcdctl's command lines and the scripts reading their output
// work against kvnode. Run `kvctl help` for the commands.
//
// Endpoints. --endpoints lists members' client URLs; net::Client fails over between them and
// bounds every try by --dial-timeout + --command-timeout (etcdctl bounds a command by the same
// two: dialing, then the call), so a partitioned member costs a request at most that before the
// next endpoint is tried. Per-member commands (endpoint status and health, defrag) ask every
// endpoint at once, each with one bounded try, so they answer in bounded time with members down.
//
// Exit codes (etcdctl's): 0 on success; 1 with "Error: ..." on stderr for a failed request, a
// bad argument or an unknown flag (the latter two followed by the command's usage).
//
// Where kvctl differs from etcdctl 3.4, and why:
//   - get --count-only prints the count alone (etcdctl 3.4 has no --count-only; 3.5's wants
//     -w fields, which kvctl does not have).
//   - lock prints the lock key then its create revision, the fencing token, where etcdctl
//     prints the key and its (empty) value; elect prints the key, the proposal and the create
//     revision. With a command, ETCD_LOCK_REV is that create revision.
//   - member add says "added to cluster" without a cluster id: the client API carries none.
//   - member update says "updated in cluster" without a cluster id, as member add.
//   - member replace <oldMemberID> --peer-urls=URLS [--name=NAME] is kvctl's own: the old member
//     out and a new one in, in one joint configuration change (etcd has no such request: it
//     takes a remove and an add, and the cluster is one member short between them). It prints
//     "Member <old> replaced by <new> in cluster", and with --name the new member's join
//     variables, as member add does.
//   - endpoint status and health list every endpoint, an unreachable one with its error.
//   - --cluster is refused: members do not publish their client URLs in the member list.
//   - usage after a usage error goes to stderr, so stdout only ever carries results.
//   - user add / user passwd / --user without a password read it from a line of stdin, never a
//     terminal prompt (etcdctl's --interactive=false).
//   - --user authenticates once per command; the token (every member holds it: Authenticate is
//     a log entry) goes with every request, those made to each endpoint (hashkv, defrag,
//     snapshot save) included. endpoint status and health send none (etcd checks neither).

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/errors.h"
#include "core/mvcc/types.h"
#include "core/server/server.h"
#include "kj/async-io.h"
#include "kj/async-unix.h"
#include "kj/vector.h"
#include "net/client.h"
#include "net/concurrency/election.h"
#include "net/concurrency/mutex.h"
#include "net/concurrency/session.h"
#include "net/tls.h"
#include "tools/ctl/flags.h"
#include "tools/ctl/format.h"
#include "tools/ctl/mirror.h"
#include "tools/ctl/txn_syntax.h"

extern char** environ;

namespace kvstore::ctl {
namespace {

using server::Request;
using server::RequestType;
using server::Response;

constexpr char kVersion[] = "0.1.0";
constexpr char kApiVersion[] = "3.4";
constexpr int kExitSuccess = 0;
constexpr int kExitError = 1;
constexpr int kExitBadConnection = 2;  // etcdctl's, also for a failed --user authentication
constexpr char kDefaultEndpoints[] = "127.0.0.1:2379";
constexpr absl::Duration kDefaultDialTimeout = absl::Seconds(2);
constexpr absl::Duration kDefaultCommandTimeout = absl::Seconds(5);
// etcdctl lock's --ttl default; elect uses the concurrency package's default session TTL.
constexpr int64_t kDefaultLockTtlSeconds = 10;
constexpr int64_t kElectTtlSeconds = net::concurrency::kDefaultSessionTtlSeconds;
// A session renews its lease three times per TTL (clientv3's cadence), so one lost renewal
// never expires it; never more often than this.
constexpr int kRenewalsPerTtl = 3;
constexpr absl::Duration kMinRenewInterval = absl::Milliseconds(500);
// A renewal that failed for a reason other than a lost lease is retried this soon.
constexpr absl::Duration kRenewRetryInterval = absl::Milliseconds(500);
// Environment variables named ETCDCTL_<FLAG> set global flags, as for etcdctl.
constexpr char kEnvironmentPrefix[] = "ETCDCTL";
// Snapshot files are private: they hold every key and value.
constexpr mode_t kSnapshotFileMode = 0600;

kj::Duration ToKj(absl::Duration d) { return absl::ToInt64Nanoseconds(d) * kj::NANOSECONDS; }

enum class Format { kSimple, kJson, kTable };

struct Command;

// Everything a command works with.
struct Context {
  const Command* command = nullptr;
  FlagSet flags;
  std::vector<std::string> args;  // positional arguments after the command's name
  Format format = Format::kSimple;
  bool hex = false;
  kj::AsyncIoContext* io = nullptr;
  std::unique_ptr<net::Client> client;
  std::string token;  // from --user: sent with every request

  kj::WaitScope& wait_scope() { return io->waitScope; }
  absl::StatusOr<Response> Call(Request request) {
    if (request.token.empty()) request.token = token;
    return client->Call(std::move(request), wait_scope());
  }
};

struct Command {
  const char* name;   // "get", "lease grant"
  const char* usage;  // after "kvctl "
  const char* summary;
  std::function<void(FlagSet&)> add_flags;
  std::function<int(Context&)> run;
  // Flags stop being parsed after this many arguments (lock NAME cmd args: cmd's own flags).
  size_t flags_until_positionals = SIZE_MAX;
};

const std::vector<Command>& Commands();

// --- Errors and output --------------------------------------------------------------------------

// etcdctl's ExitWithError: "Error: ..." on stderr, exit 1.
int Fail(absl::string_view message) {
  std::fprintf(stderr, "Error: %.*s\n", static_cast<int>(message.size()), message.data());
  return kExitError;
}
// Auth refusals read as etcdctl prints them ("etcdserver: permission denied"), without the code.
absl::string_view ErrorText(const absl::Status& status) {
  const absl::string_view etcd = EtcdAuthMessage(CodeOf(status));
  return etcd.empty() ? status.message() : etcd;
}
int Fail(const absl::Status& status) { return Fail(ErrorText(status)); }

std::string CommandUsage(const Command& command, const FlagSet& flags) {
  return absl::StrCat("NAME:\n\t", command.name, " - ", command.summary, "\n\nUSAGE:\n\tkvctl ",
                      command.usage, "\n\n", flags.Usage());
}

// A command used wrongly: the message, then the command's usage, exit 1.
int UsageError(const Context& c, absl::string_view message) {
  std::fprintf(stderr, "Error: %.*s\n\n%s", static_cast<int>(message.size()), message.data(),
               CommandUsage(*c.command, c.flags).c_str());
  return kExitError;
}

void Out(absl::string_view text) { std::fwrite(text.data(), 1, text.size(), stdout); }

std::string Bytes(const Context& c, absl::string_view bytes) {
  return c.hex ? HexBytes(bytes) : std::string(bytes);
}

// Tables exist only for member list and the endpoint commands, as in etcdctl.
int TableUnsupported() { return Fail("table not supported as output format"); }

std::string HeaderJson(const server::ResponseHeader& header) {
  JsonObject o;
  if (header.member_id != 0) o.Uint("member_id", header.member_id);
  if (header.revision != 0) o.Int("revision", header.revision);
  if (header.raft_term != 0) o.Uint("raft_term", header.raft_term);
  return o.Build();
}

// The header's fields inlined into an object (etcdctl's JSON of the lease responses embeds
// the header).
void InlineHeader(const server::ResponseHeader& header, JsonObject& o) {
  if (header.member_id != 0) o.Uint("member_id", header.member_id);
  if (header.revision != 0) o.Int("revision", header.revision);
  if (header.raft_term != 0) o.Uint("raft_term", header.raft_term);
}

std::string KvJson(const mvcc::KeyValue& kv) {
  JsonObject o;
  o.Bytes("key", kv.key);
  if (kv.create_revision != 0) o.Int("create_revision", kv.create_revision);
  if (kv.mod_revision != 0) o.Int("mod_revision", kv.mod_revision);
  if (kv.version != 0) o.Int("version", kv.version);
  if (!kv.value.empty()) o.Bytes("value", kv.value);
  if (kv.lease != 0) o.Int("lease", kv.lease);
  return o.Build();
}

std::string KvsJson(const std::vector<mvcc::KeyValue>& kvs) {
  std::vector<std::string> items;
  for (const mvcc::KeyValue& kv : kvs) items.push_back(KvJson(kv));
  return JsonArray(items);
}

// etcdctl's printKV: the key, then the value, a line each.
void PrintKv(const Context& c, const mvcc::KeyValue& kv, bool value_only) {
  if (!value_only) Out(Bytes(c, kv.key) + "\n");
  Out(Bytes(c, kv.value) + "\n");
}

// --- Keys: put, get, del, txn -------------------------------------------------------------------

void AddPutFlags(FlagSet& f) {
  f.AddString("lease", 0, "0", "lease ID (in hexadecimal) to attach to the key");
  f.AddBool("prev-kv", 0, "return the previous key-value pair before modification");
  f.AddBool("ignore-value", 0, "updates the key using its current value");
  f.AddBool("ignore-lease", 0, "updates the key using its current lease");
}

void AddGetFlags(FlagSet& f) {
  f.AddString("consistency", 0, "l", "Linearizable(l) or Serializable(s)");
  f.AddString("order", 0, "", "Order of results; ASCEND or DESCEND (ASCEND by default)");
  f.AddString("sort-by", 0, "", "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION");
  f.AddInt("limit", 0, 0, "Maximum number of results");
  f.AddBool("prefix", 0, "Get keys with matching prefix");
  f.AddBool("from-key", 0, "Get keys that are greater than or equal to the given key");
  f.AddInt("rev", 0, 0, "Specify the kv revision");
  f.AddBool("keys-only", 0, "Get only the keys");
  f.AddBool("count-only", 0, "Get only the count");
  f.AddBool("print-value-only", 0, "Only write values when using the \"simple\" output format");
}

void AddDelFlags(FlagSet& f) {
  f.AddBool("prefix", 0, "delete keys with matching prefix");
  f.AddBool("prev-kv", 0, "return deleted key-value pairs");
  f.AddBool("from-key", 0, "delete keys that are greater than or equal to the given key");
}

absl::StatusOr<int64_t> ParseLeaseId(const std::string& text, absl::string_view what) {
  uint64_t id = 0;
  if (!absl::SimpleHexAtoi(text, &id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad lease ID (", GoQuote(text), " is not hexadecimal)", what));
  }
  return static_cast<int64_t>(id);
}

// `value`: the second argument, or stdin when absent (etcdctl's argOrStdin); nullopt when the
// value must come from the arguments alone (txn ops).
absl::StatusOr<mvcc::PutRequest> PutFrom(const FlagSet& f, const std::vector<std::string>& args,
                                         bool stdin_allowed) {
  const absl::Status needs = absl::InvalidArgumentError(
      "put command needs 1 argument and input from stdin or 2 arguments");
  if (args.empty() || args.size() > 2) return needs;
  mvcc::PutRequest put;
  put.key = args[0];
  put.ignore_value = f.GetBool("ignore-value");
  if (put.ignore_value && args.size() > 1) {
    return absl::InvalidArgumentError(
        "put command needs only 1 argument when 'ignore-value' is set");
  }
  if (!put.ignore_value) {
    if (args.size() == 2) {
      put.value = args[1];
    } else if (stdin_allowed) {
      put.value.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      return needs;
    }
  }
  absl::StatusOr<int64_t> lease = ParseLeaseId(f.GetString("lease"), ", expecting ID in Hex");
  if (!lease.ok()) return lease.status();
  put.lease = *lease;
  put.prev_kv = f.GetBool("prev-kv");
  put.ignore_lease = f.GetBool("ignore-lease");
  return put;
}

// The key and range end of a get or del: [key], [key, end), a prefix or every key from one.
absl::Status SetRange(const FlagSet& f, const std::vector<std::string>& args, std::string* key,
                      std::string* range_end) {
  const bool prefix = f.GetBool("prefix");
  const bool from_key = f.GetBool("from-key");
  if (prefix && from_key) {
    return absl::InvalidArgumentError(
        "`--prefix` and `--from-key` cannot be set at the same time, choose one");
  }
  *key = args[0];
  if (args.size() > 1) {
    if (prefix || from_key) {
      return absl::InvalidArgumentError(
          "too many arguments, only accept one argument when `--prefix` or `--from-key` is set.");
    }
    *range_end = args[1];
  }
  // An empty prefix, or from an empty key, is every key: from "\0" on (etcdctl's choice).
  if (prefix) {
    if (key->empty()) {
      *key = std::string(1, '\0');
      *range_end = std::string(1, '\0');
    } else {
      *range_end = mvcc::PrefixEnd(*key);
    }
  }
  if (from_key) {
    if (key->empty()) *key = std::string(1, '\0');
    *range_end = std::string(1, '\0');
  }
  return absl::OkStatus();
}

absl::StatusOr<mvcc::RangeRequest> GetFrom(const FlagSet& f, const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 2) {
    return absl::InvalidArgumentError(
        "get command needs one argument as key and an optional argument as range_end");
  }
  mvcc::RangeRequest range;
  if (absl::Status s = SetRange(f, args, &range.key, &range.range_end); !s.ok()) return s;
  const std::string& consistency = f.GetString("consistency");
  if (consistency == "s") {
    range.serializable = true;
  } else if (consistency != "l") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown consistency flag ", GoQuote(consistency)));
  }
  range.limit = f.GetInt("limit");
  range.revision = f.GetInt("rev");
  const std::string order = absl::AsciiStrToUpper(f.GetString("order"));
  if (order == "ASCEND") {
    range.sort_order = mvcc::SortOrder::kAscend;
  } else if (order == "DESCEND") {
    range.sort_order = mvcc::SortOrder::kDescend;
  } else if (!order.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("bad sort order ", f.GetString("order")));
  }
  const std::string target = absl::AsciiStrToUpper(f.GetString("sort-by"));
  if (target == "CREATE") {
    range.sort_target = mvcc::SortTarget::kCreate;
  } else if (target == "MODIFY") {
    range.sort_target = mvcc::SortTarget::kMod;
  } else if (target == "VALUE") {
    range.sort_target = mvcc::SortTarget::kValue;
  } else if (target == "VERSION") {
    range.sort_target = mvcc::SortTarget::kVersion;
  } else if (target != "KEY" && !target.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("bad sort target ", f.GetString("sort-by")));
  }
  // Results come sorted by key already; a sort on another field without an order is ascending
  // (etcd's server makes the same choice).
  if (range.sort_target != mvcc::SortTarget::kKey && range.sort_order == mvcc::SortOrder::kNone) {
    range.sort_order = mvcc::SortOrder::kAscend;
  }
  range.keys_only = f.GetBool("keys-only");
  range.count_only = f.GetBool("count-only");
  return range;
}

absl::StatusOr<mvcc::DeleteRangeRequest> DelFrom(const FlagSet& f,
                                                 const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 2) {
    return absl::InvalidArgumentError(
        "del command needs one argument as key and an optional argument as range_end");
  }
  mvcc::DeleteRangeRequest del;
  if (absl::Status s = SetRange(f, args, &del.key, &del.range_end); !s.ok()) return s;
  del.prev_kv = f.GetBool("prev-kv");
  return del;
}

void PrintRange(const Context& c, const mvcc::RangeResponse& range, bool value_only,
                bool count_only) {
  if (count_only) {
    Out(absl::StrCat(range.count, "\n"));
    return;
  }
  for (const mvcc::KeyValue& kv : range.kvs) PrintKv(c, kv, value_only);
}

std::string RangeJson(const server::ResponseHeader& header, const mvcc::RangeResponse& range) {
  JsonObject o;
  o.Raw("header", HeaderJson(header));
  if (!range.kvs.empty()) o.Raw("kvs", KvsJson(range.kvs));
  if (range.more) o.Bool("more", true);
  if (range.count != 0) o.Int("count", range.count);
  return o.Build();
}

std::string PutJson(const server::ResponseHeader& header, const mvcc::PutResponse& put) {
  JsonObject o;
  o.Raw("header", HeaderJson(header));
  if (put.prev_kv.has_value()) o.Raw("prev_kv", KvJson(*put.prev_kv));
  return o.Build();
}

std::string DelJson(const server::ResponseHeader& header, const mvcc::DeleteRangeResponse& del) {
  JsonObject o;
  o.Raw("header", HeaderJson(header));
  if (del.deleted != 0) o.Int("deleted", del.deleted);
  if (!del.prev_kvs.empty()) o.Raw("prev_kvs", KvsJson(del.prev_kvs));
  return o.Build();
}

void PrintPut(const Context& c, const mvcc::PutResponse& put) {
  Out("OK\n");
  if (put.prev_kv.has_value()) PrintKv(c, *put.prev_kv, false);
}

void PrintDel(const Context& c, const mvcc::DeleteRangeResponse& del) {
  Out(absl::StrCat(del.deleted, "\n"));
  for (const mvcc::KeyValue& kv : del.prev_kvs) PrintKv(c, kv, false);
}

int RunPut(Context& c) {
  absl::StatusOr<mvcc::PutRequest> put = PutFrom(c.flags, c.args, /*stdin_allowed=*/true);
  if (!put.ok()) return UsageError(c, put.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = RequestType::kPut;
  request.put = std::move(*put);
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    Out(PutJson(response->header, response->put) + "\n");
  } else {
    PrintPut(c, response->put);
  }
  return kExitSuccess;
}

int RunGet(Context& c) {
  absl::StatusOr<mvcc::RangeRequest> range = GetFrom(c.flags, c.args);
  if (!range.ok()) return UsageError(c, range.status().message());
  const bool value_only = c.flags.GetBool("print-value-only");
  if (value_only && c.format != Format::kSimple) {
    return UsageError(c, "print-value-only is only for `--write-out=simple`");
  }
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = RequestType::kRange;
  request.range = std::move(*range);
  const bool count_only = request.range.count_only;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    Out(RangeJson(response->header, response->range) + "\n");
  } else {
    PrintRange(c, response->range, value_only, count_only);
  }
  return kExitSuccess;
}

int RunDel(Context& c) {
  absl::StatusOr<mvcc::DeleteRangeRequest> del = DelFrom(c.flags, c.args);
  if (!del.ok()) return UsageError(c, del.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = RequestType::kDeleteRange;
  request.delete_range = std::move(*del);
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    Out(DelJson(response->header, response->delete_range) + "\n");
  } else {
    PrintDel(c, response->delete_range);
  }
  return kExitSuccess;
}

// One txn op line: a put, get or del command line with its flags (etcdctl's
// parseRequestUnion).
absl::StatusOr<mvcc::RequestOp> ParseTxnOp(const std::string& line) {
  const absl::Status invalid = absl::InvalidArgumentError("invalid txn request: " + line);
  absl::StatusOr<std::vector<std::string>> words = Argify(line);
  if (!words.ok() || words->size() < 2) return invalid;
  const std::string verb = (*words)[0];
  const std::vector<std::string> rest(words->begin() + 1, words->end());
  FlagSet f;
  mvcc::RequestOp op;
  std::vector<std::string> args;
  if (verb == "put") {
    AddPutFlags(f);
    if (!f.Parse(rest, &args).ok()) return invalid;
    absl::StatusOr<mvcc::PutRequest> put = PutFrom(f, args, /*stdin_allowed=*/false);
    if (!put.ok()) return invalid;
    op.kind = mvcc::RequestOp::Kind::kPut;
    op.put = std::move(*put);
  } else if (verb == "get") {
    AddGetFlags(f);
    if (!f.Parse(rest, &args).ok()) return invalid;
    absl::StatusOr<mvcc::RangeRequest> range = GetFrom(f, args);
    if (!range.ok()) return invalid;
    op.kind = mvcc::RequestOp::Kind::kRange;
    op.range = std::move(*range);
  } else if (verb == "del" || verb == "delete") {
    AddDelFlags(f);
    if (!f.Parse(rest, &args).ok()) return invalid;
    absl::StatusOr<mvcc::DeleteRangeRequest> del = DelFrom(f, args);
    if (!del.ok()) return invalid;
    op.kind = mvcc::RequestOp::Kind::kDeleteRange;
    op.delete_range = std::move(*del);
  } else {
    return invalid;
  }
  return op;
}

// The lines of one section, up to a blank line or the end of input. etcdctl fails when input
// ends before the closing blank lines; kvctl takes the end of input as closing them.
std::vector<std::string> ReadSection() {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(std::cin, line)) {
    const std::string trimmed(absl::StripAsciiWhitespace(line));
    if (trimmed.empty()) break;
    lines.push_back(trimmed);
  }
  return lines;
}

absl::StatusOr<std::vector<mvcc::RequestOp>> ReadOps(bool interactive, const char* prompt) {
  if (interactive) {
    Out(prompt);
    std::fflush(stdout);
  }
  std::vector<mvcc::RequestOp> ops;
  for (const std::string& line : ReadSection()) {
    absl::StatusOr<mvcc::RequestOp> op = ParseTxnOp(line);
    if (!op.ok()) return op.status();
    ops.push_back(std::move(*op));
  }
  return ops;
}

std::string TxnJson(const server::ResponseHeader& header, const mvcc::TxnResponse& txn) {
  std::vector<std::string> responses;
  for (const mvcc::ResponseOp& op : txn.responses) {
    // The operations' headers carry the txn's revision alone, as etcd's do.
    server::ResponseHeader inner;
    inner.revision = header.revision;
    std::string body;
    switch (op.kind) {
      case mvcc::RequestOp::Kind::kRange:
        body = JsonObject().Raw("ResponseRange", RangeJson(inner, op.range)).Build();
        break;
      case mvcc::RequestOp::Kind::kPut:
        body = JsonObject().Raw("ResponsePut", PutJson(inner, op.put)).Build();
        break;
      case mvcc::RequestOp::Kind::kDeleteRange:
        body = JsonObject().Raw("ResponseDeleteRange", DelJson(inner, op.delete_range)).Build();
        break;
      case mvcc::RequestOp::Kind::kTxn:
        body = JsonObject().Raw("ResponseTxn", "{}").Build();
        break;
    }
    responses.push_back(JsonObject().Raw("Response", body).Build());
  }
  JsonObject o;
  o.Raw("header", HeaderJson(header));
  if (txn.succeeded) o.Bool("succeeded", true);
  if (!responses.empty()) o.Raw("responses", JsonArray(responses));
  return o.Build();
}

int RunTxn(Context& c) {
  if (!c.args.empty()) return UsageError(c, "txn command does not accept argument");
  if (c.format == Format::kTable) return TableUnsupported();
  const bool interactive = c.flags.GetBool("interactive");
  Request request;
  request.type = RequestType::kTxn;
  if (interactive) {
    Out("compares:\n");
    std::fflush(stdout);
  }
  for (const std::string& line : ReadSection()) {
    absl::StatusOr<mvcc::Compare> compare = ParseCompare(line);
    if (!compare.ok()) return Fail(compare.status());
    request.txn.compare.push_back(std::move(*compare));
  }
  absl::StatusOr<std::vector<mvcc::RequestOp>> success =
      ReadOps(interactive, "success requests (get, put, del):\n");
  if (!success.ok()) return Fail(success.status());
  absl::StatusOr<std::vector<mvcc::RequestOp>> failure =
      ReadOps(interactive, "failure requests (get, put, del):\n");
  if (!failure.ok()) return Fail(failure.status());
  request.txn.success = std::move(*success);
  request.txn.failure = std::move(*failure);

  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  const mvcc::TxnResponse& txn = response->txn;
  if (c.format == Format::kJson) {
    Out(TxnJson(response->header, txn) + "\n");
    return kExitSuccess;
  }
  Out(txn.succeeded ? "SUCCESS\n" : "FAILURE\n");
  for (const mvcc::ResponseOp& op : txn.responses) {
    Out("\n");
    switch (op.kind) {
      case mvcc::RequestOp::Kind::kRange:
        PrintRange(c, op.range, false, false);
        break;
      case mvcc::RequestOp::Kind::kPut:
        PrintPut(c, op.put);
        break;
      case mvcc::RequestOp::Kind::kDeleteRange:
        PrintDel(c, op.delete_range);
        break;
      case mvcc::RequestOp::Kind::kTxn:
        Out("unexpected nested txn response\n");
        break;
    }
  }
  return kExitSuccess;
}

// --- Long-running commands: interruption, sessions ----------------------------------------------

// Resolves on SIGINT or SIGTERM: long-running commands (watch, lock, elect, keep-alive) stop
// cleanly on either, releasing what they hold, and exit 0 as after a normal end.
kj::Promise<void> Interrupted(Context& c) {
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);
  return c.io->unixEventPort.onSignal(SIGINT)
      .exclusiveJoin(c.io->unixEventPort.onSignal(SIGTERM))
      .ignoreResult();
}

// The concurrency package's view of the command's client: its loop, and --user's token.
net::concurrency::ClientContext ConcurrencyContext(Context& c) {
  return {*c.client, c.io->provider->getTimer(), c.wait_scope(), c.token};
}

// Runs `argv` with `environment` added, keeping the event loop (and so the session's
// keep-alives) running until it exits; its wait(2) status.
absl::StatusOr<int> RunChild(Context& c, const std::vector<std::string>& argv,
                             const std::vector<std::string>& environment) {
  kj::UnixEventPort::captureChildExit();
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage = environment;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  std::vector<char*> env;
  for (std::string& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);

  // The child starts with no signal blocked and default handlers: kj blocks the signals it
  // captures, and a command must see SIGINT as usual.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGCHLD);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, args[0], nullptr, &attributes, args.data(), env.data());
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("exec: ", GoQuote(argv[0]), ": ", std::strerror(error)));
  }
  kj::Maybe<pid_t> child = pid;
  return c.io->unixEventPort.onChildExit(child).wait(c.wait_scope());
}

absl::Status ChildStatus(int wait_status) {
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return absl::OkStatus();
  if (WIFEXITED(wait_status)) {
    return absl::UnknownError(absl::StrCat("exit status ", WEXITSTATUS(wait_status)));
  }
  return absl::UnknownError(absl::StrCat("signal: ", strsignal(WTERMSIG(wait_status))));
}

std::string HolderJson(const std::string& key, const std::string& value,
                       mvcc::Revision create_revision, lease::LeaseId lease) {
  mvcc::KeyValue kv;
  kv.key = key;
  kv.value = value;
  kv.create_revision = create_revision;
  kv.mod_revision = create_revision;
  kv.version = 1;
  kv.lease = lease;
  return JsonObject().Raw("kvs", KvsJson({kv})).Int("count", 1).Build();
}

// lock: etcd's concurrency.Mutex (net/concurrency/mutex.h) on a session of --ttl.
int RunLock(Context& c) {
  if (c.args.empty())
    return UsageError(c, "lock takes a lock name argument and an optional command to execute.");
  if (c.format == Format::kTable) return TableUnsupported();
  const int64_t ttl = c.flags.GetInt("ttl");
  if (ttl <= 0) return UsageError(c, "--ttl must be positive");
  kj::ForkedPromise<void> stop = Interrupted(c).fork();
  absl::StatusOr<std::unique_ptr<net::concurrency::Session>> session =
      net::concurrency::Session::Create(ConcurrencyContext(c), {.ttl_seconds = ttl});
  if (!session.ok()) return Fail(session.status());
  net::concurrency::Mutex mutex(**session, c.args[0]);
  if (absl::Status locked = mutex.Lock(stop.addBranch()); !locked.ok()) {
    (*session)->Close().IgnoreError();
    // Interrupted while waiting: nothing held, nothing to report.
    return absl::IsCancelled(locked) ? kExitSuccess : Fail(locked);
  }
  absl::Status result;
  if (c.args.size() > 1) {
    const std::vector<std::string> argv(c.args.begin() + 1, c.args.end());
    absl::StatusOr<int> status = RunChild(
        c, argv, {"ETCD_LOCK_KEY=" + mutex.key(), absl::StrCat("ETCD_LOCK_REV=", mutex.token())});
    result = status.ok() ? ChildStatus(*status) : status.status();
  } else {
    if (c.format == Format::kJson) {
      Out(HolderJson(mutex.key(), "", mutex.token(), (*session)->lease()) + "\n");
    } else {
      Out(absl::StrCat(Bytes(c, mutex.key()), "\n", mutex.token(), "\n"));
    }
    std::fflush(stdout);
    stop.addBranch().exclusiveJoin((*session)->Done()).wait(c.wait_scope());
    if ((*session)->lost()) result = absl::AbortedError("session expired");
  }
  absl::Status unlocked = mutex.Unlock();
  (*session)->Close().IgnoreError();
  if (!result.ok()) return Fail(result);
  if (!unlocked.ok()) return Fail(unlocked);
  return kExitSuccess;
}

// elect: etcd's concurrency.Election (net/concurrency/election.h). With -l, prints the leader
// and then every new leader or proclamation (Observe); otherwise campaigns with the proposal,
// prints the key, the proposal and the key's create revision once elected, and resigns on
// SIGINT or SIGTERM.
int RunElect(Context& c) {
  const bool listen = c.flags.GetBool("listen");
  if (c.args.size() != 1 && c.args.size() != 2) {
    return UsageError(c,
                      "elect takes one election name argument and an optional proposal argument.");
  }
  if (c.format == Format::kTable) return TableUnsupported();
  kj::ForkedPromise<void> stop = Interrupted(c).fork();
  if (listen) {
    net::concurrency::Election observer(ConcurrencyContext(c), c.args[0]);
    absl::Status observed = observer.Observe(
        [&](const net::concurrency::LeaderValue& leader) {
          if (c.format == Format::kJson) {
            server::ResponseHeader header;
            header.revision = leader.header_revision;
            mvcc::RangeResponse range;
            range.kvs.push_back(leader.kv);
            range.count = 1;
            Out(RangeJson(header, range) + "\n");
          } else {
            PrintKv(c, leader.kv, false);
          }
          std::fflush(stdout);
          return true;
        },
        stop.addBranch());
    return observed.ok() ? kExitSuccess : Fail(observed);
  }
  if (c.args.size() != 2) return UsageError(c, "no proposal argument but -l not set");
  const std::string& proposal = c.args[1];
  absl::StatusOr<std::unique_ptr<net::concurrency::Session>> session =
      net::concurrency::Session::Create(ConcurrencyContext(c), {.ttl_seconds = kElectTtlSeconds});
  if (!session.ok()) return Fail(session.status());
  net::concurrency::Election election(**session, c.args[0]);
  if (absl::Status led = election.Campaign(proposal, stop.addBranch()); !led.ok()) {
    (*session)->Close().IgnoreError();
    return absl::IsCancelled(led) ? kExitSuccess : Fail(led);
  }
  if (c.format == Format::kJson) {
    Out(HolderJson(election.key(), proposal, election.rev(), (*session)->lease()) + "\n");
  } else {
    Out(absl::StrCat(Bytes(c, election.key()), "\n", Bytes(c, proposal), "\n", election.rev(),
                     "\n"));
  }
  std::fflush(stdout);
  stop.addBranch().exclusiveJoin((*session)->Done()).wait(c.wait_scope());
  const bool lost = (*session)->lost();
  // Resigning deletes the key, so the next candidate leads at once rather than after the TTL.
  absl::Status resigned = election.Resign();
  (*session)->Close().IgnoreError();
  if (lost) return Fail("elect: session expired");
  if (!resigned.ok()) return Fail(resigned);
  return kExitSuccess;
}

// --- watch --------------------------------------------------------------------------------------

std::string WatchJson(const mvcc::WatchResponse& response) {
  std::vector<std::string> events;
  for (const mvcc::Event& event : response.events) {
    JsonObject e;
    if (event.type == mvcc::Event::Type::kDelete) e.Int("type", 1);
    e.Raw("kv", KvJson(event.kv));
    if (event.prev_kv.has_value()) e.Raw("prev_kv", KvJson(*event.prev_kv));
    events.push_back(e.Build());
  }
  server::ResponseHeader header;
  header.revision = response.header_revision;
  return JsonObject()
      .Raw("Header", HeaderJson(header))
      .Raw("Events", events.empty() ? "null" : JsonArray(events))
      .Int("CompactRevision", response.compact_revision)
      .Bool("Canceled", response.canceled)
      .Bool("Created", response.created)
      .Build();
}

int RunWatch(Context& c) {
  if (c.args.empty()) return UsageError(c, "key to watch not provided");
  if (c.args.size() > 2) return UsageError(c, "too many arguments");
  if (c.format == Format::kTable) return TableUnsupported();
  mvcc::WatchRequest request;
  request.key = c.args[0];
  if (c.args.size() == 2) {
    if (c.flags.GetBool("prefix")) {
      return UsageError(c, "unexpected range_end " + GoQuote(c.args[1]) + " with --prefix");
    }
    request.range_end = c.args[1];
  }
  if (c.flags.GetBool("prefix")) {
    request.range_end = request.key.empty() ? std::string(1, '\0') : mvcc::PrefixEnd(request.key);
    if (request.key.empty()) request.key = std::string(1, '\0');
  }
  request.start_revision = c.flags.GetInt("rev");
  request.prev_kv = c.flags.GetBool("prev-kv");

  kj::Promise<void> interrupted = Interrupted(c);
  auto ended = kj::newPromiseAndFulfiller<absl::Status>();
  kj::PromiseFulfiller<absl::Status>* fulfiller = ended.fulfiller.get();
  const bool json = c.format == Format::kJson;
  auto on_response = [&c, fulfiller, json](const mvcc::WatchResponse& response) {
    if (json) {
      if (!response.created) Out(WatchJson(response) + "\n");
    } else {
      for (const mvcc::Event& event : response.events) {
        Out(event.type == mvcc::Event::Type::kPut ? "PUT\n" : "DELETE\n");
        if (event.prev_kv.has_value()) PrintKv(c, *event.prev_kv, false);
        PrintKv(c, event.kv, false);
      }
    }
    std::fflush(stdout);
    if (response.canceled && fulfiller->isWaiting()) {
      std::string why = response.cancel_reason;
      if (response.compact_revision != 0) {
        why = absl::StrCat("required revision has been compacted (compact revision ",
                           response.compact_revision, ")");
      }
      fulfiller->fulfill(absl::AbortedError(
          absl::StrCat("watch is canceled by the server", why.empty() ? "" : ": ", why)));
    }
  };
  absl::StatusOr<std::unique_ptr<net::Client::Watch>> watch =
      c.client->WatchAsync(request, on_response, c.token).wait(c.wait_scope());
  if (!watch.ok()) return Fail(watch.status());
  absl::Status result =
      ended.promise.exclusiveJoin(interrupted.then([] { return absl::OkStatus(); }))
          .wait(c.wait_scope());
  if (!(*watch)->ended()) (*watch)->Cancel().wait(c.wait_scope()).IgnoreError();
  return result.ok() ? kExitSuccess : Fail(result);
}

// --- lease --------------------------------------------------------------------------------------

absl::StatusOr<int64_t> LeaseArg(Context& c) {
  if (c.args.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(c.command->name, " command needs 1 argument"));
  }
  uint64_t id = 0;
  if (!absl::SimpleHexAtoi(c.args[0], &id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad lease ID arg (", GoQuote(c.args[0]), "), expecting ID in Hex"));
  }
  return static_cast<int64_t>(id);
}

int RunLeaseGrant(Context& c) {
  if (c.args.size() != 1) return UsageError(c, "lease grant command needs TTL argument");
  int64_t ttl = 0;
  if (!absl::SimpleAtoi(c.args[0], &ttl)) {
    return UsageError(c, absl::StrCat("bad TTL (", GoQuote(c.args[0]), " is not an integer)"));
  }
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = RequestType::kLeaseGrant;
  request.ttl_seconds = ttl;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok())
    return Fail(absl::StrCat("failed to grant lease (", response.status().message(), ")"));
  const lease::LeaseInfo& lease = response->lease;
  if (c.format == Format::kJson) {
    JsonObject o;
    InlineHeader(response->header, o);
    Out(o.Int("ID", lease.id).Int("TTL", lease.granted_ttl_seconds).Build() + "\n");
  } else {
    Out(absl::StrFormat("lease %016x granted with TTL(%ds)\n", static_cast<uint64_t>(lease.id),
                        lease.granted_ttl_seconds));
  }
  return kExitSuccess;
}

int RunLeaseRevoke(Context& c) {
  absl::StatusOr<int64_t> id = LeaseArg(c);
  if (!id.ok()) return UsageError(c, id.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = RequestType::kLeaseRevoke;
  request.lease_id = *id;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok())
    return Fail(absl::StrCat("failed to revoke lease (", response.status().message(), ")"));
  if (c.format == Format::kJson) {
    Out(JsonObject().Raw("header", HeaderJson(response->header)).Build() + "\n");
  } else {
    Out(absl::StrFormat("lease %016x revoked\n", static_cast<uint64_t>(*id)));
  }
  return kExitSuccess;
}

int RunLeaseTimeToLive(Context& c) {
  absl::StatusOr<int64_t> id = LeaseArg(c);
  if (!id.ok()) return UsageError(c, id.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  const bool keys = c.flags.GetBool("keys");
  Request request;
  request.type = RequestType::kLeaseTimeToLive;
  request.lease_id = *id;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  // etcd answers an unknown lease with TTL -1 and etcdctl prints "already expired".
  const bool expired = !response.ok() && CodeOf(response.status()) == ErrorCode::kLeaseNotFound;
  if (!response.ok() && !expired) return Fail(response.status());
  if (c.format == Format::kJson) {
    JsonObject o;
    if (response.ok()) InlineHeader(response->header, o);
    o.Int("id", *id);
    if (expired) {
      o.Int("ttl", -1).Raw("keys", "null");
    } else {
      const lease::LeaseInfo& lease = response->lease;
      std::vector<std::string> names;
      if (keys) {
        for (const std::string& key : lease.keys)
          names.push_back(JsonString(absl::Base64Escape(key)));
      }
      o.Int("ttl", lease.remaining_ttl_seconds).Int("granted-ttl", lease.granted_ttl_seconds);
      o.Raw("keys", names.empty() ? "null" : JsonArray(names));
    }
    Out(o.Build() + "\n");
    return kExitSuccess;
  }
  if (expired) {
    Out(absl::StrFormat("lease %016x already expired\n", static_cast<uint64_t>(*id)));
    return kExitSuccess;
  }
  const lease::LeaseInfo& lease = response->lease;
  std::string text = absl::StrFormat("lease %016x granted with TTL(%ds), remaining(%ds)",
                                     static_cast<uint64_t>(*id), lease.granted_ttl_seconds,
                                     lease.remaining_ttl_seconds);
  if (keys) {
    std::vector<std::string> names;
    for (const std::string& key : lease.keys) names.push_back(Bytes(c, key));
    absl::StrAppend(&text, ", attached keys(", GoStringList(names), ")");
  }
  Out(text + "\n");
  return kExitSuccess;
}

int RunLeaseList(Context& c) {
  if (!c.args.empty()) return UsageError(c, "lease list command takes no arguments");
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = RequestType::kLeaseLeases;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok())
    return Fail(absl::StrCat("failed to list leases (", response.status().message(), ")"));
  if (c.format == Format::kJson) {
    std::vector<std::string> ids;
    for (lease::LeaseId id : response->leases) ids.push_back(JsonObject().Int("id", id).Build());
    JsonObject o;
    InlineHeader(response->header, o);
    Out(o.Raw("leases", JsonArray(ids)).Build() + "\n");
    return kExitSuccess;
  }
  Out(absl::StrFormat("found %d leases\n", response->leases.size()));
  for (lease::LeaseId id : response->leases)
    Out(absl::StrFormat("%016x\n", static_cast<uint64_t>(id)));
  return kExitSuccess;
}

void PrintKeepAlive(const Context& c, lease::LeaseId id, int64_t ttl) {
  if (c.format == Format::kJson) {
    Out(JsonObject().Int("ID", id).Int("TTL", ttl).Build() + "\n");
  } else {
    Out(absl::StrFormat("lease %016x keepalived with TTL(%d)\n", static_cast<uint64_t>(id), ttl));
  }
  std::fflush(stdout);
}

int RunLeaseKeepAlive(Context& c) {
  absl::StatusOr<int64_t> id = LeaseArg(c);
  if (!id.ok()) return UsageError(c, id.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  std::unique_ptr<net::Client::KeepAlive> keep_alive = c.client->NewKeepAlive(*id);
  if (c.flags.GetBool("once")) {
    absl::StatusOr<int64_t> ttl = keep_alive->Renew().wait(c.wait_scope());
    if (!ttl.ok()) return Fail(ttl.status());
    PrintKeepAlive(c, *id, *ttl);
    return kExitSuccess;
  }
  kj::ForkedPromise<void> stop = Interrupted(c).fork();
  kj::Timer& timer = c.io->provider->getTimer();
  while (true) {
    absl::StatusOr<int64_t> ttl = keep_alive->Renew().wait(c.wait_scope());
    if (!ttl.ok() && CodeOf(ttl.status()) == ErrorCode::kLeaseNotFound) {
      if (c.format == Format::kSimple)
        Out(absl::StrFormat("lease %016x expired or revoked.\n", static_cast<uint64_t>(*id)));
      return kExitSuccess;
    }
    absl::Duration next = kRenewRetryInterval;
    if (ttl.ok()) {
      PrintKeepAlive(c, *id, *ttl);
      next = std::max(absl::Seconds(*ttl) / kRenewalsPerTtl, kMinRenewInterval);
    } else {
      std::fprintf(stderr, "lease %016llx: keep-alive failed: %s\n",
                   static_cast<unsigned long long>(*id),
                   std::string(ttl.status().message()).c_str());
    }
    const bool stopped = timer.afterDelay(ToKj(next))
                             .then([] { return false; })
                             .exclusiveJoin(stop.addBranch().then([] { return true; }))
                             .wait(c.wait_scope());
    if (stopped) return kExitSuccess;
  }
}

// --- member -------------------------------------------------------------------------------------

absl::StatusOr<raft::NodeId> MemberArg(Context& c) {
  if (c.args.size() != 1) {
    return absl::InvalidArgumentError("member ID is not provided");
  }
  uint64_t id = 0;
  if (!absl::SimpleHexAtoi(c.args[0], &id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad member ID arg (", GoQuote(c.args[0]), "), expecting ID in Hex"));
  }
  return id;
}

std::string MemberJson(const server::Member& m) {
  std::vector<std::string> urls;
  for (const std::string& url : m.peer_urls) urls.push_back(JsonString(url));
  JsonObject o;
  o.Uint("ID", m.id);
  if (!m.name.empty()) o.String("name", m.name);
  if (!urls.empty()) o.Raw("peerURLs", JsonArray(urls));
  if (m.is_learner) o.Bool("isLearner", true);
  return o.Build();
}

std::string MembersJson(const std::vector<server::Member>& members) {
  std::vector<std::string> items;
  for (const server::Member& m : members) items.push_back(MemberJson(m));
  return JsonArray(items);
}

int RunMemberList(Context& c) {
  if (!c.args.empty()) return UsageError(c, "member list command takes no arguments");
  Request request;
  request.type = RequestType::kMemberList;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    Out(JsonObject()
            .Raw("header", HeaderJson(response->header))
            .Raw("members", MembersJson(response->members))
            .Build() +
        "\n");
    return kExitSuccess;
  }
  std::vector<std::vector<std::string>> rows;
  for (const server::Member& m : response->members) {
    // A member that has not started yet has no name (etcd's "unstarted"); the member list
    // carries no client URLs, so that column stays empty.
    rows.push_back({absl::StrFormat("%x", m.id), m.name.empty() ? "unstarted" : "started", m.name,
                    absl::StrJoin(m.peer_urls, ","), "", m.is_learner ? "true" : "false"});
  }
  if (c.format == Format::kTable) {
    Out(RenderTable({"ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"}, rows));
  } else {
    for (const auto& row : rows) Out(absl::StrJoin(row, ", ") + "\n");
  }
  return kExitSuccess;
}

int RunMemberAdd(Context& c) {
  if (c.args.size() != 1) return UsageError(c, "member name not provided");
  const std::string& peer_urls = c.flags.GetString("peer-urls");
  if (peer_urls.empty()) return UsageError(c, "member peer urls not provided");
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = RequestType::kMemberAdd;
  request.member.name = c.args[0];
  request.member.peer_urls = absl::StrSplit(peer_urls, ',', absl::SkipEmpty());
  request.member.is_learner = c.flags.GetBool("learner");
  absl::StatusOr<Response> response = c.Call(request);
  if (!response.ok()) return Fail(response.status());
  const server::Member& added = response->member;
  if (c.format == Format::kJson) {
    Out(JsonObject()
            .Raw("header", HeaderJson(response->header))
            .Raw("member", MemberJson(added))
            .Raw("members", MembersJson(response->members))
            .Build() +
        "\n");
    return kExitSuccess;
  }
  Out(absl::StrFormat("Member %16x added%sto cluster\n", added.id,
                      added.is_learner ? " as learner " : " "));
  // What the new member's kvnode needs to join (etcdctl prints the same variables).
  std::vector<std::string> cluster;
  for (const server::Member& m : response->members) {
    const std::string name = m.id == added.id ? c.args[0] : m.name;
    for (const std::string& url : m.peer_urls) cluster.push_back(absl::StrCat(name, "=", url));
  }
  Out(absl::StrCat(
      "\nETCD_NAME=", GoQuote(c.args[0]),
      "\nETCD_INITIAL_CLUSTER=", GoQuote(absl::StrJoin(cluster, ",")),
      "\nETCD_INITIAL_ADVERTISE_PEER_URLS=", GoQuote(absl::StrJoin(request.member.peer_urls, ",")),
      "\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"));
  return kExitSuccess;
}

int RunMemberChange(Context& c, RequestType type, const char* verb) {
  absl::StatusOr<raft::NodeId> id = MemberArg(c);
  if (!id.ok()) return UsageError(c, id.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = type;
  request.member.id = *id;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    Out(JsonObject()
            .Raw("header", HeaderJson(response->header))
            .Raw("members", MembersJson(response->members))
            .Build() +
        "\n");
  } else {
    Out(absl::StrFormat("Member %16x %s cluster\n", *id, verb));
  }
  return kExitSuccess;
}

// member update and member replace: a member id and --peer-urls.
absl::StatusOr<Request> MemberUrlsRequest(Context& c, RequestType type) {
  absl::StatusOr<raft::NodeId> id = MemberArg(c);
  if (!id.ok()) return id.status();
  const std::string& peer_urls = c.flags.GetString("peer-urls");
  if (peer_urls.empty()) return absl::InvalidArgumentError("member peer urls not provided");
  Request request;
  request.type = type;
  request.member.id = *id;
  request.member.peer_urls = absl::StrSplit(peer_urls, ',', absl::SkipEmpty());
  return request;
}

int RunMemberUpdate(Context& c) {
  absl::StatusOr<Request> request = MemberUrlsRequest(c, RequestType::kMemberUpdate);
  if (!request.ok()) return UsageError(c, request.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  const raft::NodeId id = request->member.id;
  absl::StatusOr<Response> response = c.Call(*std::move(request));
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    Out(JsonObject()
            .Raw("header", HeaderJson(response->header))
            .Raw("members", MembersJson(response->members))
            .Build() +
        "\n");
  } else {
    Out(absl::StrFormat("Member %16x updated in cluster\n", id));
  }
  return kExitSuccess;
}

int RunMemberReplace(Context& c) {
  absl::StatusOr<Request> request = MemberUrlsRequest(c, RequestType::kMemberReplace);
  if (!request.ok()) return UsageError(c, request.status().message());
  if (c.format == Format::kTable) return TableUnsupported();
  const raft::NodeId old_id = request->member.id;
  const std::vector<std::string> peer_urls = request->member.peer_urls;
  absl::StatusOr<Response> response = c.Call(*std::move(request));
  if (!response.ok()) return Fail(response.status());
  const server::Member& added = response->member;
  if (c.format == Format::kJson) {
    Out(JsonObject()
            .Raw("header", HeaderJson(response->header))
            .Raw("member", MemberJson(added))
            .Raw("members", MembersJson(response->members))
            .Build() +
        "\n");
    return kExitSuccess;
  }
  Out(absl::StrFormat("Member %16x replaced by member %16x in cluster\n", old_id, added.id));
  const std::string& name = c.flags.GetString("name");
  if (name.empty()) return kExitSuccess;
  std::vector<std::string> cluster;
  for (const server::Member& m : response->members) {
    const std::string member_name = m.id == added.id ? name : m.name;
    for (const std::string& url : m.peer_urls) {
      cluster.push_back(absl::StrCat(member_name, "=", url));
    }
  }
  Out(absl::StrCat("\nETCD_NAME=", GoQuote(name),
                   "\nETCD_INITIAL_CLUSTER=", GoQuote(absl::StrJoin(cluster, ",")),
                   "\nETCD_INITIAL_ADVERTISE_PEER_URLS=", GoQuote(absl::StrJoin(peer_urls, ",")),
                   "\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"));
  return kExitSuccess;
}

// --- endpoint -----------------------------------------------------------------------------------

// etcdctl's --cluster, accepted so its command lines parse, then refused with the reason.
void AddClusterFlag(FlagSet& f) {
  f.AddBool("cluster", 0, "not supported: the member list carries no client URLs");
}

// Refuses --cluster: it needs every member's client URLs, which the member list does not carry.
bool RefuseCluster(Context& c) {
  if (!c.flags.GetBool("cluster")) return false;
  Fail(
      "--cluster is not supported: the member list does not carry client URLs; list every "
      "member's client URL in --endpoints");
  return true;
}

struct Health {
  std::string endpoint;
  bool healthy = false;
  absl::Duration took;
  std::string error;
};

// One endpoint's health as etcdctl judges it: a linearizable read answers (so the member has a
// leader and a quorum), and no alarm is raised.
kj::Promise<Health> CheckHealth(Context& c, size_t i) {
  Request read;
  read.type = RequestType::kRange;
  read.range.key = "health";
  const absl::Time start = absl::Now();
  return c.client->CallEndpointAsync(i, std::move(read))
      .then([&c, i, start](absl::StatusOr<Response> response) -> kj::Promise<Health> {
        Health health;
        health.endpoint = c.client->endpoints()[i];
        health.took = absl::Now() - start;
        if (!response.ok()) {
          health.error = std::string(response.status().message());
          return health;
        }
        Request alarms;
        alarms.type = RequestType::kAlarmList;
        return c.client->CallEndpointAsync(i, std::move(alarms))
            .then([health](absl::StatusOr<Response> response) mutable {
              if (!response.ok()) {
                health.error = "Unable to fetch the alarm list";
              } else if (!response->alarms.empty()) {
                health.error = "Active Alarm(s): ";
                for (const server::Alarm& alarm : response->alarms) {
                  health.error +=
                      alarm.type == server::AlarmType::kNoSpace ? "NOSPACE " : "UNKNOWN ";
                }
              } else {
                health.healthy = true;
              }
              return health;
            });
      });
}

int RunEndpointHealth(Context& c) {
  if (RefuseCluster(c)) return kExitError;
  kj::Vector<kj::Promise<Health>> checks;
  for (size_t i = 0; i < c.client->endpoints().size(); ++i) checks.add(CheckHealth(c, i));
  kj::Array<Health> results = kj::joinPromises(checks.releaseAsArray()).wait(c.wait_scope());
  bool all_healthy = true;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> json;
  for (const Health& h : results) {
    all_healthy = all_healthy && h.healthy;
    rows.push_back({h.endpoint, h.healthy ? "true" : "false", GoDuration(h.took), h.error});
    JsonObject o;
    o.String("endpoint", h.endpoint).Bool("health", h.healthy).String("took", GoDuration(h.took));
    if (!h.error.empty()) o.String("error", h.error);
    json.push_back(o.Build());
  }
  switch (c.format) {
    case Format::kJson:
      Out(JsonArray(json) + "\n");
      break;
    case Format::kTable:
      Out(RenderTable({"endpoint", "health", "took", "error"}, rows));
      break;
    case Format::kSimple:
      // etcdctl 3.4 writes these lines to stderr, healthy or not.
      for (const Health& h : results) {
        if (h.healthy) {
          std::fprintf(stderr, "%s is healthy: successfully committed proposal: took = %s\n",
                       h.endpoint.c_str(), GoDuration(h.took).c_str());
        } else {
          std::fprintf(stderr, "%s is unhealthy: failed to commit proposal: %s\n",
                       h.endpoint.c_str(), h.error.c_str());
        }
      }
      break;
  }
  std::fflush(stdout);
  return all_healthy ? kExitSuccess : Fail("unhealthy cluster");
}

int RunEndpointStatus(Context& c) {
  if (RefuseCluster(c)) return kExitError;
  kj::Vector<kj::Promise<absl::StatusOr<net::EndpointStatus>>> asks;
  const std::vector<std::string>& endpoints = c.client->endpoints();
  for (size_t i = 0; i < endpoints.size(); ++i) asks.add(c.client->StatusAsync(i));
  kj::Array<absl::StatusOr<net::EndpointStatus>> results =
      kj::joinPromises(asks.releaseAsArray()).wait(c.wait_scope());
  bool all_ok = true;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> json;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      all_ok = false;
      std::fprintf(stderr, "Failed to get the status of endpoint %s (%s)\n", endpoints[i].c_str(),
                   std::string(results[i].status().message()).c_str());
      rows.push_back({endpoints[i], "", "", "", "", "", "", "", "",
                      std::string(results[i].status().message())});
      continue;
    }
    const net::MemberStatusInfo& m = results[i]->member;
    rows.push_back({endpoints[i], absl::StrFormat("%x", m.id), results[i]->version,
                    HumanizeBytes(m.db_size_bytes), m.leader == m.id ? "true" : "false",
                    m.is_learner ? "true" : "false", absl::StrCat(m.term),
                    absl::StrCat(m.commit_index), absl::StrCat(m.applied_index),
                    absl::StrJoin(m.errors, ", ")});
    server::ResponseHeader header;
    header.member_id = m.id;
    header.raft_term = m.term;
    JsonObject status;
    status.Raw("header", HeaderJson(header))
        .String("version", results[i]->version)
        .Uint("dbSize", m.db_size_bytes)
        .Uint("leader", m.leader)
        .Uint("raftIndex", m.commit_index)
        .Uint("raftTerm", m.term)
        .Uint("raftAppliedIndex", m.applied_index);
    if (!m.errors.empty()) {
      std::vector<std::string> errors;
      for (const std::string& e : m.errors) errors.push_back(JsonString(e));
      status.Raw("errors", JsonArray(errors));
    }
    if (m.is_learner) status.Bool("isLearner", true);
    json.push_back(
        JsonObject().String("Endpoint", endpoints[i]).Raw("Status", status.Build()).Build());
  }
  switch (c.format) {
    case Format::kJson:
      Out(JsonArray(json) + "\n");
      break;
    case Format::kTable:
      Out(RenderTable({"endpoint", "ID", "version", "db size", "is leader", "is learner",
                       "raft term", "raft index", "raft applied index", "errors"},
                      rows));
      break;
    case Format::kSimple:
      for (size_t i = 0; i < rows.size(); ++i) {
        if (results[i].ok()) Out(absl::StrJoin(rows[i], ", ") + "\n");
      }
      break;
  }
  std::fflush(stdout);
  return all_ok ? kExitSuccess : kExitError;
}

int RunEndpointHashKv(Context& c) {
  if (RefuseCluster(c)) return kExitError;
  const int64_t revision = c.flags.GetInt("rev");
  kj::Vector<kj::Promise<absl::StatusOr<Response>>> asks;
  const std::vector<std::string>& endpoints = c.client->endpoints();
  for (size_t i = 0; i < endpoints.size(); ++i) {
    Request hash;
    hash.type = RequestType::kHash;
    hash.revision = revision;
    hash.token = c.token;
    asks.add(c.client->CallEndpointAsync(i, std::move(hash)));
  }
  kj::Array<absl::StatusOr<Response>> results =
      kj::joinPromises(asks.releaseAsArray()).wait(c.wait_scope());
  bool all_ok = true;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> json;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      all_ok = false;
      std::fprintf(stderr, "Failed to get the hash of endpoint %s (%s)\n", endpoints[i].c_str(),
                   std::string(ErrorText(results[i].status())).c_str());
      continue;
    }
    const mvcc::HashResponse& h = results[i]->hash;
    rows.push_back({endpoints[i], absl::StrCat(h.hash)});
    json.push_back(JsonObject()
                       .String("Endpoint", endpoints[i])
                       .Raw("HashKV", JsonObject()
                                          .Raw("header", HeaderJson(results[i]->header))
                                          .Uint("hash", h.hash)
                                          .Int("compact_revision", h.compact_revision)
                                          .Build())
                       .Build());
  }
  switch (c.format) {
    case Format::kJson:
      Out(JsonArray(json) + "\n");
      break;
    case Format::kTable:
      Out(RenderTable({"endpoint", "hash"}, rows));
      break;
    case Format::kSimple:
      for (const auto& row : rows) Out(absl::StrJoin(row, ", ") + "\n");
      break;
  }
  return all_ok ? kExitSuccess : kExitError;
}

// --- maintenance --------------------------------------------------------------------------------

int RunCompaction(Context& c) {
  if (c.args.size() != 1) return UsageError(c, "compaction command needs 1 argument");
  int64_t revision = 0;
  if (!absl::SimpleAtoi(c.args[0], &revision)) {
    return Fail(absl::StrCat("bad revision ", GoQuote(c.args[0])));
  }
  // --physical is accepted for etcdctl's command lines: a compaction is applied to the backend
  // before it is answered, so it is always physical here.
  Request request;
  request.type = RequestType::kCompact;
  request.revision = revision;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  Out(absl::StrCat("compacted revision ", revision, "\n"));
  return kExitSuccess;
}

int RunDefrag(Context& c) {
  if (RefuseCluster(c)) return kExitError;
  bool failed = false;
  const std::vector<std::string>& endpoints = c.client->endpoints();
  // One member at a time, as etcdctl does: a defragmentation stalls the member doing it.
  for (size_t i = 0; i < endpoints.size(); ++i) {
    Request request;
    request.type = RequestType::kDefragment;
    request.token = c.token;
    absl::StatusOr<Response> response =
        c.client->CallEndpointAsync(i, std::move(request)).wait(c.wait_scope());
    if (response.ok()) {
      Out(absl::StrFormat("Finished defragmenting etcd member[%s]\n", endpoints[i]));
    } else {
      failed = true;
      std::fprintf(stderr, "Failed to defragment etcd member[%s] (%s)\n", endpoints[i].c_str(),
                   std::string(ErrorText(response.status())).c_str());
    }
  }
  return failed ? kExitError : kExitSuccess;
}

std::string AlarmText(const server::Alarm& alarm) {
  return absl::StrCat("memberID:", alarm.member_id,
                      " alarm:", alarm.type == server::AlarmType::kNoSpace ? "NOSPACE" : "NONE",
                      " \n");
}

int RunAlarm(Context& c, RequestType type) {
  if (!c.args.empty()) return UsageError(c, "alarm commands take no arguments");
  if (c.format == Format::kTable) return TableUnsupported();
  Request request;
  request.type = type;
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    std::vector<std::string> alarms;
    for (const server::Alarm& a : response->alarms) {
      alarms.push_back(JsonObject()
                           .Uint("memberID", a.member_id)
                           .Int("alarm", static_cast<int>(a.type))
                           .Build());
    }
    JsonObject o;
    o.Raw("header", HeaderJson(response->header));
    if (!alarms.empty()) o.Raw("alarms", JsonArray(alarms));
    Out(o.Build() + "\n");
    return kExitSuccess;
  }
  for (const server::Alarm& a : response->alarms) Out(AlarmText(a));
  return kExitSuccess;
}

int RunSnapshotSave(Context& c) {
  if (c.args.size() != 1) return UsageError(c, "snapshot save expects one argument");
  if (c.client->endpoints().size() != 1) {
    return Fail(absl::StrCat("snapshot must be requested to one selected node, not multiple [",
                             absl::StrJoin(c.client->endpoints(), " "), "]"));
  }
  const std::string& path = c.args[0];
  // Written beside the target and renamed once complete and synced, so FILE is never a partial
  // snapshot.
  const std::string part = path + ".part";
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kSnapshotFileMode);
  if (fd < 0) return Fail(absl::StrCat("could not open ", part, " (", std::strerror(errno), ")"));
  uint64_t bytes = 0;
  auto write_chunk = [fd, &part, &bytes](absl::string_view chunk) {
    size_t written = 0;
    while (written < chunk.size()) {
      const ssize_t n = ::write(fd, chunk.data() + written, chunk.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return absl::InternalError(absl::StrCat("write ", part, ": ", std::strerror(errno)));
      }
      written += n;
    }
    bytes += chunk.size();
    return absl::OkStatus();
  };
  absl::Status status = c.client->SnapshotAsync(0, write_chunk, c.token).wait(c.wait_scope());
  if (status.ok() && ::fsync(fd) != 0) {
    status = absl::InternalError(absl::StrCat("fsync ", part, ": ", std::strerror(errno)));
  }
  ::close(fd);
  if (status.ok() && ::rename(part.c_str(), path.c_str()) != 0) {
    status = absl::InternalError(absl::StrCat("rename ", part, ": ", std::strerror(errno)));
  }
  if (!status.ok()) {
    ::unlink(part.c_str());
    return Fail(status);
  }
  Out(absl::StrFormat("Snapshot saved at %s\n", path));
  return kExitSuccess;
}

int RunMoveLeader(Context& c) {
  if (c.args.size() != 1) return UsageError(c, "move-leader command needs 1 argument");
  uint64_t target = 0;
  if (!absl::SimpleHexAtoi(c.args[0], &target)) {
    return UsageError(
        c, absl::StrCat("bad member ID arg (", GoQuote(c.args[0]), "), expecting ID in Hex"));
  }
  if (c.format == Format::kTable) return TableUnsupported();
  // The leader must be one of the endpoints: it alone hands leadership over (etcdctl asks each
  // endpoint's status for the same reason). All are asked at once, each try bounded.
  kj::Vector<kj::Promise<absl::StatusOr<net::EndpointStatus>>> asks;
  const std::vector<std::string>& endpoints = c.client->endpoints();
  for (size_t i = 0; i < endpoints.size(); ++i) asks.add(c.client->StatusAsync(i));
  kj::Array<absl::StatusOr<net::EndpointStatus>> results =
      kj::joinPromises(asks.releaseAsArray()).wait(c.wait_scope());
  std::optional<size_t> leader_endpoint;
  raft::NodeId leader = raft::kNoNode;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok() && results[i]->member.id == results[i]->member.leader) {
      leader_endpoint = i;
      leader = results[i]->member.id;
      break;
    }
  }
  if (!leader_endpoint.has_value()) {
    return Fail(absl::StrCat("no leader endpoint given at [", absl::StrJoin(endpoints, " "), "]"));
  }
  Request request;
  request.type = RequestType::kMoveLeader;
  request.member.id = target;
  absl::StatusOr<Response> response =
      c.client->CallEndpointAsync(*leader_endpoint, std::move(request)).wait(c.wait_scope());
  if (!response.ok()) return Fail(response.status());
  if (c.format == Format::kJson) {
    Out(JsonObject().Raw("header", HeaderJson(response->header)).Build() + "\n");
  } else {
    Out(absl::StrFormat("Leadership transferred from %x to %x\n", leader, target));
  }
  return kExitSuccess;
}

int RunVersion(Context&) {
  Out(absl::StrCat("kvctl version: ", kVersion, "\nAPI version: ", kApiVersion, "\n"));
  return kExitSuccess;
}

// --- The command table and main -----------------------------------------------------------------

// --- Auth (etcdctl 3.4's user, role and auth commands) ------------------------------------------

Request AuthOf(RequestType type) {
  Request r;
  r.type = type;
  return r;
}

// A password from "name:password", else a line of stdin (etcdctl --interactive=false).
std::string PasswordFrom(const std::string& given) {
  if (!given.empty()) return given;
  std::string line;
  std::getline(std::cin, line);
  return line;
}

int RunAuthRequest(Context& c, Request request, size_t args,
                   const std::function<void(const Response&)>& print) {
  if (c.args.size() != args) {
    return UsageError(c, absl::StrCat(c.command->name, " takes ", args, " argument(s)"));
  }
  if (c.format != Format::kSimple) return Fail("kvctl prints auth results in simple format only");
  absl::StatusOr<Response> response = c.Call(std::move(request));
  if (!response.ok()) return Fail(response.status());
  print(*response);
  return kExitSuccess;
}

// etcdctl's printRoleGet / permission lines.
std::string PermissionLine(const auth::Permission& p) {
  if (p.range_end.empty()) return absl::StrCat("\t", p.key, "\n");
  if (p.range_end == std::string(1, '\0')) return absl::StrCat("\t[", p.key, ", <open ended>\n");
  std::string line = absl::StrCat("\t[", p.key, ", ", p.range_end, ")");
  if (mvcc::PrefixEnd(p.key) == p.range_end) absl::StrAppend(&line, " (prefix ", p.key, ")");
  return line + "\n";
}

std::string RoleText(const auth::Role& role) {
  std::string out = absl::StrCat("Role ", role.name, "\nKV Read:\n");
  for (const auth::Permission& p : role.permissions) {
    if (p.type != auth::PermissionType::kWrite) out += PermissionLine(p);
  }
  out += "KV Write:\n";
  for (const auth::Permission& p : role.permissions) {
    if (p.type != auth::PermissionType::kRead) out += PermissionLine(p);
  }
  return out;
}

void PrintNames(const Response& r) {
  for (const std::string& name : r.names) Out(name + "\n");
}

int RunUserAdd(Context& c) {
  if (c.args.size() != 1)
    return UsageError(c, "user add command requires user name as its argument");
  Request r = AuthOf(RequestType::kUserAdd);
  const size_t colon = c.args[0].find(':');
  r.auth.name = c.args[0].substr(0, colon);
  r.auth.password = PasswordFrom(colon == std::string::npos ? c.flags.GetString("new-user-password")
                                                            : c.args[0].substr(colon + 1));
  const std::string name = r.auth.name;
  return RunAuthRequest(c, std::move(r), 1,
                        [&](const Response&) { Out(absl::StrCat("User ", name, " created\n")); });
}

int RunUserGet(Context& c) {
  if (c.args.size() != 1)
    return UsageError(c, "user get command requires user name as its argument");
  Request r = AuthOf(RequestType::kUserGet);
  r.auth.name = c.args[0];
  const bool detail = c.flags.GetBool("detail");
  std::vector<auth::Role> roles;
  auto print = [&](const Response& response) {
    if (!detail) {
      Out(absl::StrCat("User: ", response.user.name,
                       "\nRoles: ", absl::StrJoin(response.user.roles, " "), "\n"));
      return;
    }
    Out(absl::StrCat("User: ", response.user.name, "\n"));
    for (const std::string& role : response.user.roles) {
      Request get = AuthOf(RequestType::kRoleGet);
      get.auth.role = role;
      absl::StatusOr<Response> role_response = c.Call(std::move(get));
      if (role_response.ok()) Out("\n" + RoleText(role_response->role));
    }
  };
  return RunAuthRequest(c, std::move(r), 1, print);
}

int RunUserPasswd(Context& c) {
  if (c.args.size() != 1)
    return UsageError(c, "user passwd command requires user name as its argument");
  Request r = AuthOf(RequestType::kUserChangePassword);
  r.auth.name = c.args[0];
  r.auth.password = PasswordFrom("");
  return RunAuthRequest(c, std::move(r), 1, [](const Response&) { Out("Password updated\n"); });
}

int RunUserRole(Context& c, RequestType type) {
  if (c.args.size() != 2) {
    return UsageError(c, absl::StrCat(c.command->name,
                                      " command requires user name and role name as its argument"));
  }
  Request r = AuthOf(type);
  r.auth.name = c.args[0];
  r.auth.role = c.args[1];
  const std::string user = c.args[0], role = c.args[1];
  return RunAuthRequest(c, std::move(r), 2, [&](const Response&) {
    Out(absl::StrCat("Role ", role, " is ",
                     type == RequestType::kUserGrantRole ? "granted to" : "revoked from", " user ",
                     user, "\n"));
  });
}

int RunNamed(Context& c, RequestType type, const char* noun, const char* done) {
  if (c.args.size() != 1) {
    return UsageError(
        c, absl::StrCat(c.command->name, " command requires ", noun, " name as its argument"));
  }
  Request r = AuthOf(type);
  (std::string(noun) == "user" ? r.auth.name : r.auth.role) = c.args[0];
  const std::string name = c.args[0];
  return RunAuthRequest(c, std::move(r), 1, [&](const Response&) {
    Out(absl::StrCat(noun[0] == 'u' ? "User " : "Role ", name, " ", done, "\n"));
  });
}

// [key, range_end) from <key> [endkey], --prefix and --from-key, as etcdctl's permRange.
absl::Status PermissionRange(Context& c, size_t first, auth::Permission* p) {
  p->key = c.args[first];
  const bool prefix = c.flags.GetBool("prefix"), from_key = c.flags.GetBool("from-key");
  const bool has_end = c.args.size() > first + 1;
  if ((prefix && from_key) || ((prefix || from_key) && has_end)) {
    return absl::InvalidArgumentError("--prefix and --from-key cannot be used with an end key");
  }
  if (has_end) p->range_end = c.args[first + 1];
  if (prefix) p->range_end = mvcc::PrefixEnd(p->key);
  if (from_key) p->range_end = std::string(1, '\0');
  return absl::OkStatus();
}

int RunRoleGrantPermission(Context& c) {
  if (c.args.size() < 3 || c.args.size() > 4) {
    return UsageError(c,
                      "role grant-permission command requires role name, permission type, and "
                      "key [endkey] as its argument");
  }
  Request r = AuthOf(RequestType::kRoleGrantPermission);
  r.auth.role = c.args[0];
  const std::string type = absl::AsciiStrToLower(c.args[1]);
  if (type == "read") {
    r.auth.permission.type = auth::PermissionType::kRead;
  } else if (type == "write") {
    r.auth.permission.type = auth::PermissionType::kWrite;
  } else if (type == "readwrite") {
    r.auth.permission.type = auth::PermissionType::kReadWrite;
  } else {
    return Fail(absl::StrCat("invalid permission type ", c.args[1]));
  }
  if (absl::Status s = PermissionRange(c, 2, &r.auth.permission); !s.ok()) {
    return UsageError(c, s.message());
  }
  const std::string role = c.args[0];
  return RunAuthRequest(c, std::move(r), c.args.size(),
                        [&](const Response&) { Out(absl::StrCat("Role ", role, " updated\n")); });
}

int RunRoleRevokePermission(Context& c) {
  if (c.args.size() < 2 || c.args.size() > 3) {
    return UsageError(c,
                      "role revoke-permission command requires role name and key [endkey] as "
                      "its argument");
  }
  Request r = AuthOf(RequestType::kRoleRevokePermission);
  r.auth.role = c.args[0];
  if (absl::Status s = PermissionRange(c, 1, &r.auth.permission); !s.ok()) {
    return UsageError(c, s.message());
  }
  const std::string role = c.args[0];
  const auth::Permission p = r.auth.permission;
  return RunAuthRequest(c, std::move(r), c.args.size(), [&](const Response&) {
    if (p.range_end.empty()) {
      Out(absl::StrCat("Permission of key ", p.key, " is revoked from role ", role, "\n"));
    } else if (p.range_end == std::string(1, '\0')) {
      Out(absl::StrCat("Permission of range [", p.key, ", <open ended> is revoked from role ", role,
                       "\n"));
    } else {
      Out(absl::StrCat("Permission of range [", p.key, ", ", p.range_end, ") is revoked from role ",
                       role, "\n"));
    }
  });
}

// etcdctl 3.4's auth enable: when user root lacks role root, it adds role root, grants it, and
// tries again.
int RunAuthEnable(Context& c) {
  if (!c.args.empty()) return UsageError(c, "auth enable command does not accept any arguments");
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<Response> response = c.Call(AuthOf(RequestType::kAuthEnable));
    if (response.ok()) {
      Out("Authentication Enabled\n");
      return kExitSuccess;
    }
    if (CodeOf(response.status()) != ErrorCode::kRootRoleNotExist || attempt > 0) {
      return Fail(response.status());
    }
    Request add = AuthOf(RequestType::kRoleAdd);
    add.auth.role = "root";
    absl::StatusOr<Response> added = c.Call(std::move(add));
    if (!added.ok() && CodeOf(added.status()) != ErrorCode::kRoleExists) {
      return Fail(added.status());
    }
    Request grant = AuthOf(RequestType::kUserGrantRole);
    grant.auth.name = "root";
    grant.auth.role = "root";
    if (absl::StatusOr<Response> granted = c.Call(std::move(grant)); !granted.ok()) {
      return Fail(granted.status());
    }
  }
  return kExitError;
}

// --user name[:password] (and --password): authenticates once; the token goes with every call.
int Authenticate(Context& c) {
  const std::string user = c.flags.GetString("user");
  if (user.empty()) return kExitSuccess;
  Request r = AuthOf(RequestType::kAuthenticate);
  const size_t colon = user.find(':');
  r.auth.name = user.substr(0, colon);
  r.auth.password = colon != std::string::npos ? user.substr(colon + 1)
                                               : PasswordFrom(c.flags.GetString("password"));
  absl::StatusOr<Response> response = c.Call(std::move(r));
  if (!response.ok()) {
    Fail(response.status());
    return kExitBadConnection;
  }
  c.token = response->token;
  return kExitSuccess;
}

// --- member migrate ------------------------------------------------------------------------------

constexpr absl::Duration kDefaultMigrateWaitTimeout = absl::Minutes(2);
// A promotion refused while the learner catches up is asked again this often; the refusal is
// printed when it changes, and at least this often.
constexpr absl::Duration kMigrateRetryInterval = absl::Milliseconds(500);
constexpr absl::Duration kMigrateReportInterval = absl::Seconds(5);

// Whether a membership request that failed may be sent again: it was not applied (no leader,
// or the previous change still pending), or its outcome is unknown (a timeout): the caller
// checks after a retry whether the first try took effect.
bool MembershipRetriable(const absl::Status& status) {
  switch (CodeOf(status)) {
    case ErrorCode::kNoLeader:
    case ErrorCode::kNotLeader:
    case ErrorCode::kTimeout:
    case ErrorCode::kLeadershipChanged:
    case ErrorCode::kConfChangePending:
    case ErrorCode::kStopped:
      return true;
    default:
      return absl::IsUnavailable(status);
  }
}

// The command line that starts the learner: it joins the running cluster (etcd's variables,
// as member add prints them, then kvnode's flags).
void PrintJoinInstructions(const std::string& name, const std::vector<std::string>& peer_urls,
                           const server::Member& added,
                           const std::vector<server::Member>& members) {
  std::vector<std::string> cluster;
  for (const server::Member& m : members) {
    const std::string member_name = m.id == added.id ? name : m.name;
    for (const std::string& url : m.peer_urls) {
      cluster.push_back(absl::StrCat(member_name, "=", url));
    }
  }
  const std::string initial_cluster = absl::StrJoin(cluster, ",");
  const std::string urls = absl::StrJoin(peer_urls, ",");
  Out(absl::StrCat("\nETCD_NAME=", GoQuote(name), "\nETCD_INITIAL_CLUSTER=",
                   GoQuote(initial_cluster), "\nETCD_INITIAL_ADVERTISE_PEER_URLS=", GoQuote(urls),
                   "\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n\nStart the new member now:\n"
                   "  kvnode --name ",
                   name, " --initial-cluster ", initial_cluster,
                   " --initial-cluster-state existing --initial-advertise-peer-urls ", urls,
                   " --listen-peer-urls ", urls,
                   " --listen-client-urls <its client URLs> --advertise-client-urls <its client "
                   "URLs> --data-dir <an empty directory>\n"));
}

// member migrate OLD NEW --peer-urls=URLS: replaces a voting member by a new one without ever
// lowering the number of voters that are caught up: NEW joins as a learner (it does not count
// towards the quorum while it catches up), is promoted once the leader judges it caught up
// (etcd's rule: it holds 90% of the leader's log; LEARNER_NOT_READY until then), and only then
// is OLD removed. Each step says what it did on a line of its own; run again after a failure
// or an interruption, it resumes: a learner with NEW's peer URLs is reused, and a promotion or
// a removal that already happened counts as done.
int RunMemberMigrate(Context& c) {
  if (c.args.size() != 2) {
    return UsageError(c, "member migrate takes the old member's ID and the new member's name");
  }
  uint64_t old_id = 0;
  if (!absl::SimpleHexAtoi(c.args[0], &old_id)) {
    return UsageError(
        c, absl::StrCat("bad member ID arg (", GoQuote(c.args[0]), "), expecting ID in Hex"));
  }
  const std::string& name = c.args[1];
  const std::vector<std::string> peer_urls =
      absl::StrSplit(c.flags.GetString("peer-urls"), ',', absl::SkipEmpty());
  if (peer_urls.empty()) return UsageError(c, "member peer urls not provided");
  const absl::Duration wait_timeout = c.flags.GetDuration("wait-timeout");
  if (wait_timeout <= absl::ZeroDuration()) {
    return UsageError(c, "--wait-timeout must be positive");
  }
  if (c.format != Format::kSimple) return Fail("member migrate writes its progress as text only");
  const absl::Time deadline = absl::Now() + wait_timeout;
  kj::Timer& timer = c.io->provider->getTimer();

  // A membership request, sent again while the cluster cannot take it yet.
  auto call = [&](Request request) -> absl::StatusOr<Response> {
    while (true) {
      absl::StatusOr<Response> response = c.Call(request);
      if (response.ok() || !MembershipRetriable(response.status()) || absl::Now() >= deadline) {
        return response;
      }
      timer.afterDelay(ToKj(kMigrateRetryInterval)).wait(c.wait_scope());
    }
  };

  // 1. The old member is a voter; the new one is added as a learner, unless it already is.
  Request list;
  list.type = RequestType::kMemberList;
  absl::StatusOr<Response> members = call(list);
  if (!members.ok()) return Fail(members.status());
  const server::Member* old_member = nullptr;
  const server::Member* existing = nullptr;
  for (const server::Member& m : members->members) {
    if (m.id == old_id) old_member = &m;
    if (m.peer_urls == peer_urls) existing = &m;
  }
  if (old_member == nullptr) {
    return Fail(absl::StrFormat("member %x is not in the cluster", old_id));
  }
  if (old_member->is_learner) {
    return Fail(absl::StrFormat(
        "member %x is a learner: nothing to migrate (member remove it instead)", old_id));
  }
  if (existing != nullptr && existing->id == old_id) {
    return Fail(absl::StrFormat("member %x already has peer URLs %s", old_id,
                                absl::StrJoin(peer_urls, ",")));
  }
  server::Member learner;
  if (existing != nullptr) {
    learner = *existing;
    Out(absl::StrFormat("Member %16x with peer URLs %s is already in the cluster%s: resuming\n",
                        learner.id, absl::StrJoin(peer_urls, ","),
                        learner.is_learner ? " as learner" : ""));
  } else {
    Request add;
    add.type = RequestType::kMemberAdd;
    add.member.name = name;
    add.member.peer_urls = peer_urls;
    add.member.is_learner = true;
    absl::StatusOr<Response> added = call(add);
    std::vector<server::Member> now = added.ok() ? added->members : std::vector<server::Member>();
    if (added.ok()) {
      learner = added->member;
    } else if (CodeOf(added.status()) == ErrorCode::kMemberExists) {
      // After a retry: the first try, whose outcome was unknown, added it.
      members = call(list);
      if (!members.ok()) return Fail(members.status());
      for (const server::Member& m : members->members) {
        if (m.peer_urls == peer_urls) learner = m;
      }
      if (learner.id == raft::kNoNode) return Fail(added.status());
      now = members->members;
    } else {
      return Fail(added.status());
    }
    Out(absl::StrFormat("Member %16x added as learner to cluster\n", learner.id));
    PrintJoinInstructions(name, peer_urls, learner, now);
  }
  std::fflush(stdout);

  // 2. Promotion, retried until the leader judges the learner caught up.
  if (learner.is_learner) {
    Out(absl::StrFormat("Waiting for member %x to catch up (at most %s)\n", learner.id,
                        absl::FormatDuration(wait_timeout)));
    std::fflush(stdout);
    std::string last_report;
    absl::Time last_report_time = absl::InfinitePast();
    while (true) {
      Request promote;
      promote.type = RequestType::kMemberPromote;
      promote.member.id = learner.id;
      absl::StatusOr<Response> promoted = c.Call(promote);
      // A promotion whose outcome was unknown may have happened: then it is no learner now.
      if (promoted.ok() || CodeOf(promoted.status()) == ErrorCode::kLearnerNotPromotable) break;
      const bool waiting = CodeOf(promoted.status()) == ErrorCode::kLearnerNotReady ||
                           MembershipRetriable(promoted.status());
      if (!waiting) return Fail(promoted.status());
      if (absl::Now() >= deadline) {
        return Fail(absl::StrFormat(
            "member %x did not catch up within %s (%s); it stays a learner: run member migrate "
            "again to go on waiting, or member remove %x to give up",
            learner.id, absl::FormatDuration(wait_timeout), promoted.status().message(),
            learner.id));
      }
      // Progress: each new answer, and the same one again now and then.
      const std::string report(promoted.status().message());
      if (report != last_report || absl::Now() - last_report_time >= kMigrateReportInterval) {
        Out(absl::StrCat("  ", report, "\n"));
        std::fflush(stdout);
        last_report = report;
        last_report_time = absl::Now();
      }
      timer.afterDelay(ToKj(kMigrateRetryInterval)).wait(c.wait_scope());
    }
    Out(absl::StrFormat("Member %16x promoted in cluster\n", learner.id));
    std::fflush(stdout);
  }

  // 3. The old member goes; a removal whose outcome was unknown may have happened already.
  Request remove;
  remove.type = RequestType::kMemberRemove;
  remove.member.id = old_id;
  absl::StatusOr<Response> removed = call(remove);
  if (!removed.ok() && CodeOf(removed.status()) != ErrorCode::kMemberNotFound) {
    return Fail(removed.status());
  }
  Out(absl::StrFormat("Member %16x removed from cluster\n", old_id));
  Out(absl::StrFormat(
      "Migrated: member %x replaced member %x; stop the old member's kvnode and point clients "
      "at the new member's client URLs\n",
      learner.id, old_id));
  return kExitSuccess;
}

// --- make-mirror ---------------------------------------------------------------------------------

// Authenticates --dest-user (and --dest-password) at the destination: its token, or "" when
// no user is given.
absl::StatusOr<std::string> DestinationToken(Context& c, net::Client& destination) {
  const std::string user = c.flags.GetString("dest-user");
  if (user.empty()) return std::string();
  Request r = AuthOf(RequestType::kAuthenticate);
  const size_t colon = user.find(':');
  r.auth.name = user.substr(0, colon);
  r.auth.password = colon != std::string::npos ? user.substr(colon + 1)
                                               : PasswordFrom(c.flags.GetString("dest-password"));
  absl::StatusOr<Response> response = destination.Call(std::move(r), c.wait_scope());
  if (!response.ok()) return response.status();
  return response->token;
}

int RunMakeMirror(Context& c) {
  if (c.args.size() != 1) return Fail("make-mirror takes one destination argument");
  std::string dest_prefix = c.flags.GetString("dest-prefix");
  const bool no_dest_prefix = c.flags.GetBool("no-dest-prefix");
  if (no_dest_prefix && !dest_prefix.empty()) {
    return Fail(
        "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one");
  }
  // etcdctl's destination TLS flags: any of them makes a destination without a scheme use TLS.
  std::unique_ptr<net::TlsContext> destination_tls;
  if (c.flags.Changed("dest-cacert") || c.flags.Changed("dest-cert") ||
      c.flags.Changed("dest-key")) {
    net::TlsFiles files;
    files.trusted_ca_file = c.flags.GetString("dest-cacert");
    files.cert_file = c.flags.GetString("dest-cert");
    files.key_file = c.flags.GetString("dest-key");
    absl::StatusOr<std::unique_ptr<net::TlsContext>> context = net::TlsContext::NewClient(files);
    if (!context.ok()) return Fail(context.status());
    destination_tls = std::move(*context);
  } else if (c.flags.Changed("dest-insecure-transport") &&
             !c.flags.GetBool("dest-insecure-transport") && c.args[0].rfind("https://", 0) != 0) {
    return Fail(
        "--dest-insecure-transport=false needs --dest-cacert (or an https:// destination, "
        "checked against the system's trust store)");
  }
  const absl::Duration progress_interval = c.flags.GetDuration("progress-interval");
  if (progress_interval <= absl::ZeroDuration()) {
    return UsageError(c, "--progress-interval must be positive");
  }
  MirrorOptions options;
  options.prefix = c.flags.GetString("prefix");
  // etcdctl: without either flag, keys keep their prefix at the destination.
  options.dest_prefix = no_dest_prefix ? "" : dest_prefix.empty() ? options.prefix : dest_prefix;
  options.source_token = c.token;
  options.progress_interval = progress_interval;

  net::ClientOptions destination_options;
  for (absl::string_view endpoint : absl::StrSplit(c.args[0], ',')) {
    endpoint = absl::StripAsciiWhitespace(endpoint);
    if (!endpoint.empty()) destination_options.endpoints.emplace_back(endpoint);
  }
  destination_options.tls = destination_tls.get();
  destination_options.per_try_timeout =
      ToKj(c.flags.GetDuration("dial-timeout") + c.flags.GetDuration("command-timeout"));
  absl::StatusOr<std::unique_ptr<net::Client>> destination = net::Client::Create(
      c.io->provider->getNetwork(), c.io->provider->getTimer(), destination_options);
  if (!destination.ok()) return Fail(destination.status());
  absl::StatusOr<std::string> token = DestinationToken(c, **destination);
  if (!token.ok()) {
    Fail(token.status());
    return kExitBadConnection;
  }
  options.destination_token = *token;

  Mirror mirror(*c.io, *c.client, **destination, std::move(options), [](int64_t mirrored) {
    Out(absl::StrCat(mirrored, "\n"));
    std::fflush(stdout);
  });
  const absl::Status result = mirror.Run(Interrupted(c));
  return result.ok() ? kExitSuccess : Fail(result);
}

void AddMakeMirrorFlags(FlagSet& f) {
  f.AddString("prefix", 0, "", "Key-value prefix to mirror");
  f.AddString("dest-prefix", 0, "",
              "destination prefix to mirror a prefix to a different prefix in the destination "
              "cluster");
  f.AddBool("no-dest-prefix", 0, "mirror key-values to the root of the destination cluster");
  f.AddString("dest-cacert", 0, "",
              "Verify certificates of TLS enabled secure servers using this CA bundle");
  f.AddString("dest-cert", 0, "",
              "Identify secure client using this TLS certificate file for the destination "
              "cluster");
  f.AddString("dest-key", 0, "", "Identify secure client using this TLS key file");
  // etcdctl's default is true: plain text unless a --dest-cacert/cert/key or https:// says TLS.
  f.AddBool("dest-insecure-transport", 0,
            "Disable transport security for client connections (default true)");
  f.AddString("dest-user", 0, "",
              "Destination username[:password] for authentication (prompt if password is not "
              "supplied)");
  f.AddString("dest-password", 0, "",
              "Destination password for authentication (if this option is used, --dest-user "
              "option shouldn't include password)");
  f.AddDuration("progress-interval", absl::Seconds(30),
                "how often the count of mirrored keys is printed (etcdctl: every 30s)");
}

void AddGlobalFlags(FlagSet& f) {
  constexpr bool kGlobal = true;
  f.AddString("endpoints", 0, kDefaultEndpoints, "gRPC endpoints", kGlobal);
  f.AddDuration("dial-timeout", kDefaultDialTimeout, "dial timeout for client connections",
                kGlobal);
  f.AddDuration("command-timeout", kDefaultCommandTimeout,
                "timeout for short running command (excluding dial timeout)", kGlobal);
  f.AddString("write-out", 'w', "simple", "set the output format (json, simple, table)", kGlobal);
  f.AddBool("hex", 0, "print byte strings as hex encoded strings", kGlobal);
  f.AddBool("help", 'h', "help for kvctl", kGlobal);
  f.AddString("user", 0, "",
              "username[:password] for authentication (prompt if password is not supplied)",
              kGlobal);
  f.AddString("password", 0, "",
              "password for authentication (if this option is used, --user option shouldn't "
              "include password)",
              kGlobal);
  f.AddString("cacert", 0, "",
              "verify certificates of TLS-enabled secure servers using this CA bundle", kGlobal);
  f.AddString("cert", 0, "", "identify secure client using this TLS certificate file", kGlobal);
  f.AddString("key", 0, "", "identify secure client using this TLS key file", kGlobal);
  f.AddBool("insecure-skip-tls-verify", 0,
            "skip server certificate verification (CAUTION: this option should be enabled only "
            "for testing purposes)",
            kGlobal);
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"get", "get [options] <key> [range_end]", "Gets the key or a range of keys", AddGetFlags,
       RunGet},
      {"put", "put [options] <key> <value> (<value> can also be given from stdin)",
       "Puts the given key into the store", AddPutFlags, RunPut},
      {"del", "del [options] <key> [range_end]", "Removes the specified key or range of keys",
       AddDelFlags, RunDel},
      {"txn", "txn [options] (read the transaction from stdin)",
       "Txn processes all the requests in one transaction",
       [](FlagSet& f) { f.AddBool("interactive", 'i', "Input transaction in interactive mode"); },
       RunTxn},
      {"compaction", "compaction [options] <revision>", "Compacts the event history in etcd",
       [](FlagSet& f) {
         f.AddBool("physical", 0,
                   "'true' to wait for compaction to physically remove all old revisions");
       },
       RunCompaction},
      {"watch", "watch [options] <key or prefix> [range_end]",
       "Watches events stream on keys or prefixes, until interrupted",
       [](FlagSet& f) {
         f.AddBool("prefix", 0, "Watch on a prefix if prefix is set");
         f.AddInt("rev", 0, 0, "Revision to start watching");
         f.AddBool("prev-kv", 0, "get the previous key-value pair before the event happens");
       },
       RunWatch},
      {"lease grant", "lease grant <ttl>", "Creates leases", nullptr, RunLeaseGrant},
      {"lease revoke", "lease revoke <leaseID>", "Revokes leases", nullptr, RunLeaseRevoke},
      {"lease timetolive", "lease timetolive <leaseID> [options]", "Get lease information",
       [](FlagSet& f) { f.AddBool("keys", 0, "Get keys attached to this lease"); },
       RunLeaseTimeToLive},
      {"lease list", "lease list", "List all active leases", nullptr, RunLeaseList},
      {"lease keep-alive", "lease keep-alive [options] <leaseID>", "Keeps leases alive (renew)",
       [](FlagSet& f) {
         f.AddBool("once", 0,
                   "Resets the keep-alive time to its original value and exits immediately");
       },
       RunLeaseKeepAlive},
      {"member add", "member add <memberName> [options]", "Adds a member into the cluster",
       [](FlagSet& f) {
         f.AddString("peer-urls", 0, "", "comma separated peer URLs for the new member.");
         f.AddBool("learner", 0, "indicates if the new member is raft learner");
       },
       RunMemberAdd},
      {"member remove", "member remove <memberID>", "Removes a member from the cluster", nullptr,
       [](Context& c) { return RunMemberChange(c, RequestType::kMemberRemove, "removed from"); }},
      {"member update", "member update <memberID> [options]", "Updates a member in the cluster",
       [](FlagSet& f) {
         f.AddString("peer-urls", 0, "", "comma separated peer URLs for the updated member.");
       },
       RunMemberUpdate},
      {"member replace", "member replace <memberID> [options]",
       "Replaces a member by a new one in one joint configuration change (not in etcdctl)",
       [](FlagSet& f) {
         f.AddString("peer-urls", 0, "", "comma separated peer URLs for the new member.");
         f.AddString("name", 0, "", "the new member's name, for the join variables printed.");
       },
       RunMemberReplace},
      {"member list", "member list", "Lists all members in the cluster", nullptr, RunMemberList},
      {"member promote", "member promote <memberID>", "Promotes a non-voting member in the cluster",
       nullptr,
       [](Context& c) { return RunMemberChange(c, RequestType::kMemberPromote, "promoted in"); }},
      {"endpoint health", "endpoint health",
       "Checks the healthiness of endpoints specified in `--endpoints` flag",
       [](FlagSet& f) { AddClusterFlag(f); }, RunEndpointHealth},
      {"endpoint status", "endpoint status",
       "Prints out the status of endpoints specified in `--endpoints` flag",
       [](FlagSet& f) { AddClusterFlag(f); }, RunEndpointStatus},
      {"endpoint hashkv", "endpoint hashkv",
       "Prints the KV history hash for each endpoint in --endpoints",
       [](FlagSet& f) {
         AddClusterFlag(f);
         f.AddInt("rev", 0, 0, "maximum revision to hash (default: all revisions)");
       },
       RunEndpointHashKv},
      {"alarm disarm", "alarm disarm", "Disarms all alarms", nullptr,
       [](Context& c) { return RunAlarm(c, RequestType::kAlarmDisarm); }},
      {"alarm list", "alarm list", "Lists all alarms", nullptr,
       [](Context& c) { return RunAlarm(c, RequestType::kAlarmList); }},
      {"defrag", "defrag", "Defragments the storage of the etcd members with given endpoints",
       [](FlagSet& f) { AddClusterFlag(f); }, RunDefrag},
      {"snapshot save", "snapshot save <filename>",
       "Stores an etcd node backend snapshot to a given file", nullptr, RunSnapshotSave},
      {"user add", "user add <user name or user:password> [options]", "Adds a new user",
       [](FlagSet& f) {
         f.AddString("new-user-password", 0, "", "Supply password from the command line flag");
         f.AddBool("interactive", 0, "Read password from stdin instead of interactive terminal");
       },
       RunUserAdd},
      {"user delete", "user delete <user name>", "Deletes a user", nullptr,
       [](Context& c) { return RunNamed(c, RequestType::kUserDelete, "user", "deleted"); }},
      {"user get", "user get <user name> [options]", "Gets detailed information of a user",
       [](FlagSet& f) { f.AddBool("detail", 0, "Show permissions of roles granted to the user"); },
       RunUserGet},
      {"user list", "user list", "Lists all users", nullptr,
       [](Context& c) { return RunAuthRequest(c, AuthOf(RequestType::kUserList), 0, PrintNames); }},
      {"user passwd", "user passwd <user name> [options]", "Changes password of user",
       [](FlagSet& f) {
         f.AddBool("interactive", 0,
                   "If true, read password from stdin instead of interactive "
                   "terminal");
       },
       RunUserPasswd},
      {"user grant-role", "user grant-role <user name> <role name>", "Grants a role to a user",
       nullptr, [](Context& c) { return RunUserRole(c, RequestType::kUserGrantRole); }},
      {"user revoke-role", "user revoke-role <user name> <role name>", "Revokes a role from a user",
       nullptr, [](Context& c) { return RunUserRole(c, RequestType::kUserRevokeRole); }},
      {"role add", "role add <role name>", "Adds a new role", nullptr,
       [](Context& c) { return RunNamed(c, RequestType::kRoleAdd, "role", "created"); }},
      {"role delete", "role delete <role name>", "Deletes a role", nullptr,
       [](Context& c) { return RunNamed(c, RequestType::kRoleDelete, "role", "deleted"); }},
      {"role get", "role get <role name>", "Gets detailed information of a role", nullptr,
       [](Context& c) {
         if (c.args.size() != 1) {
           return UsageError(c, "role get command requires role name as its argument");
         }
         Request r = AuthOf(RequestType::kRoleGet);
         r.auth.role = c.args[0];
         return RunAuthRequest(c, std::move(r), 1,
                               [](const Response& response) { Out(RoleText(response.role)); });
       }},
      {"role list", "role list", "Lists all roles", nullptr,
       [](Context& c) { return RunAuthRequest(c, AuthOf(RequestType::kRoleList), 0, PrintNames); }},
      {"role grant-permission",
       "role grant-permission [options] <role name> <permission type> <key> [endkey]",
       "Grants a key to a role",
       [](FlagSet& f) {
         f.AddBool("prefix", 0, "grant a prefix permission");
         f.AddBool("from-key", 0,
                   "grant a permission of keys that are greater than or equal to "
                   "the given key using byte compare");
       },
       RunRoleGrantPermission},
      {"role revoke-permission", "role revoke-permission <role name> <key> [endkey]",
       "Revokes a key from a role",
       [](FlagSet& f) {
         f.AddBool("prefix", 0, "revoke a prefix permission");
         f.AddBool("from-key", 0,
                   "revoke a permission of keys that are greater than or equal to "
                   "the given key using byte compare");
       },
       RunRoleRevokePermission},
      {"auth enable", "auth enable", "Enables authentication", nullptr, RunAuthEnable},
      {"auth disable", "auth disable", "Disables authentication", nullptr,
       [](Context& c) {
         return RunAuthRequest(c, AuthOf(RequestType::kAuthDisable), 0,
                               [](const Response&) { Out("Authentication Disabled\n"); });
       }},
      {"move-leader", "move-leader <transferee-member-id>",
       "Transfers leadership to another etcd cluster member.", nullptr, RunMoveLeader},
      {"lock", "lock <lockname> [exec-command arg1 arg2 ...]",
       "Acquires a named lock; prints its key and create revision (the fencing token)",
       [](FlagSet& f) { f.AddInt("ttl", 0, kDefaultLockTtlSeconds, "timeout for session"); },
       RunLock, /*flags_until_positionals=*/1},
      {"elect", "elect <election-name> [proposal]",
       "Observes and participates in leader election; prints the leader key, proposal and create "
       "revision",
       [](FlagSet& f) { f.AddBool("listen", 'l', "observation mode"); }, RunElect},
      {"member migrate", "member migrate <old memberID> <new memberName> --peer-urls=<urls>",
       "Replaces a member: adds the new one as learner, promotes it once caught up, removes the "
       "old one",
       [](FlagSet& f) {
         f.AddString("peer-urls", 0, "", "comma separated peer URLs for the new member.");
         f.AddDuration("wait-timeout", kDefaultMigrateWaitTimeout,
                       "how long to wait for the learner to catch up");
       },
       RunMemberMigrate},
      {"make-mirror", "make-mirror [options] <destination>",
       "Makes a mirror at the destination etcd cluster", AddMakeMirrorFlags, RunMakeMirror},
      {"version", "version", "Prints the version of kvctl", nullptr, RunVersion},
  };
  return commands;
}

std::string MainUsage() {
  FlagSet globals;
  AddGlobalFlags(globals);
  std::string out = absl::StrCat(
      "NAME:\n\tkvctl - A simple command line client for kvstore (etcdctl's commands and "
      "output).\n\nVERSION:\n\t",
      kVersion, "\n\nAPI VERSION:\n\t", kApiVersion,
      "\n\nUSAGE:\n\tkvctl [flags] <command> [arguments]\n\nCOMMANDS:\n");
  for (const Command& command : Commands()) {
    absl::StrAppend(&out, "\t", command.name,
                    std::string(20 - std::min<size_t>(19, strlen(command.name)), ' '),
                    command.summary, "\n");
  }
  out += "\n";
  return out + globals.Usage();
}

// The command named by the first words of `words` (one or two: "lease grant").
const Command* FindCommand(const std::vector<std::string>& words, size_t* used) {
  for (const Command& command : Commands()) {
    const std::vector<std::string> name = absl::StrSplit(command.name, ' ');
    if (name.size() > words.size()) continue;
    if (std::equal(name.begin(), name.end(), words.begin())) {
      *used = name.size();
      return &command;
    }
  }
  return nullptr;
}

int Run(int argc, char** argv) {
  const std::vector<std::string> all(argv + 1, argv + argc);
  // Global flags may come before or after the command's name (cobra's persistent flags), so the
  // name is found first: the leading words that are not flags or global flags' values.
  FlagSet globals;
  AddGlobalFlags(globals);
  std::vector<std::string> words;
  std::vector<size_t> word_index;
  for (size_t i = 0; i < all.size() && words.size() < 2; ++i) {
    const std::string& arg = all[i];
    if (arg == "--") break;
    if (arg.size() > 1 && arg[0] == '-') {
      const bool has_value = arg.find('=') != std::string::npos;
      const bool takes_value = arg[1] == '-' ? globals.TakesValue(arg.substr(2))
                                             : arg.size() == 2 && globals.TakesValue(arg[1]);
      if (takes_value && !has_value) ++i;
      continue;
    }
    words.push_back(arg);
    word_index.push_back(i);
  }
  if (!words.empty() && words[0] == "help") {
    words.erase(words.begin());
    size_t used = 0;
    const Command* command = words.empty() ? nullptr : FindCommand(words, &used);
    if (command == nullptr) {
      Out(MainUsage());
    } else {
      FlagSet flags;
      AddGlobalFlags(flags);
      if (command->add_flags) command->add_flags(flags);
      Out(CommandUsage(*command, flags));
    }
    return kExitSuccess;
  }
  size_t used = 0;
  const Command* command = FindCommand(words, &used);
  if (command == nullptr) {
    const bool asked_help = std::find(all.begin(), all.end(), "--help") != all.end() ||
                            std::find(all.begin(), all.end(), "-h") != all.end();
    if (asked_help || words.empty()) {
      if (asked_help) {
        Out(MainUsage());
        return kExitSuccess;
      }
      std::fprintf(stderr, "Error: no command given\n\n%s", MainUsage().c_str());
      return kExitError;
    }
    std::fprintf(stderr, "Error: unknown command %s for \"kvctl\"\n\nRun 'kvctl help' for usage.\n",
                 GoQuote(absl::StrJoin(words, " ")).c_str());
    return kExitError;
  }

  Context c;
  c.command = command;
  AddGlobalFlags(c.flags);
  if (command->add_flags) command->add_flags(c.flags);
  std::vector<std::string> rest;
  for (size_t i = 0; i < all.size(); ++i) {
    if (std::find(word_index.begin(), word_index.begin() + used, i) == word_index.begin() + used) {
      rest.push_back(all[i]);
    }
  }
  if (absl::Status s = c.flags.Parse(rest, &c.args, command->flags_until_positionals); !s.ok()) {
    return UsageError(c, s.message());
  }
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) environment.emplace_back(*e);
  if (absl::Status s = c.flags.ApplyEnvironment(kEnvironmentPrefix, environment); !s.ok()) {
    return UsageError(c, s.message());
  }
  if (c.flags.GetBool("help")) {
    Out(CommandUsage(*command, c.flags));
    return kExitSuccess;
  }
  const std::string& format = c.flags.GetString("write-out");
  if (format == "simple") {
    c.format = Format::kSimple;
  } else if (format == "json") {
    c.format = Format::kJson;
  } else if (format == "table") {
    c.format = Format::kTable;
  } else {
    return Fail(absl::StrCat("unsupported output format ", GoQuote(format),
                             " (kvctl writes simple, json or table)"));
  }
  c.hex = c.flags.GetBool("hex");

  kj::AsyncIoContext io = kj::setupAsyncIo();
  c.io = &io;
  net::ClientOptions options;
  for (absl::string_view endpoint : absl::StrSplit(c.flags.GetString("endpoints"), ',')) {
    endpoint = absl::StripAsciiWhitespace(endpoint);
    if (!endpoint.empty()) options.endpoints.emplace_back(endpoint);
  }
  // One try covers connecting and answering: etcdctl's dial timeout plus its command timeout.
  options.per_try_timeout =
      ToKj(c.flags.GetDuration("dial-timeout") + c.flags.GetDuration("command-timeout"));
  // etcdctl's TLS flags: any of them makes endpoints without a scheme use TLS too.
  std::unique_ptr<net::TlsContext> tls;
  if (c.flags.Changed("cacert") || c.flags.Changed("cert") || c.flags.Changed("key") ||
      c.flags.GetBool("insecure-skip-tls-verify")) {
    net::TlsFiles files;
    files.trusted_ca_file = c.flags.GetString("cacert");
    files.cert_file = c.flags.GetString("cert");
    files.key_file = c.flags.GetString("key");
    files.insecure_skip_verify = c.flags.GetBool("insecure-skip-tls-verify");
    absl::StatusOr<std::unique_ptr<net::TlsContext>> context = net::TlsContext::NewClient(files);
    if (!context.ok()) return Fail(context.status());
    tls = std::move(*context);
    options.tls = tls.get();
  }
  absl::StatusOr<std::unique_ptr<net::Client>> client =
      net::Client::Create(io.provider->getNetwork(), io.provider->getTimer(), options);
  if (!client.ok()) return Fail(client.status());
  c.client = std::move(*client);
  int code = Authenticate(c);
  if (code == kExitSuccess) code = command->run(c);
  std::fflush(stdout);
  // The client's connections live on the event loop: they go before it does.
  c.client.reset();
  return code;
}

}  // namespace
}  // namespace kvstore::ctl

int main(int argc, char** argv) { return kvstore::ctl::Run(argc, argv); }
