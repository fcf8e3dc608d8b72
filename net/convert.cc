#include "net/convert.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capnp/any.h"
#include "core/base/errors.h"
#include "kj/exception.h"

namespace kvstore::net {
namespace {

// Decoders return early on the first malformed field; this keeps them readable.
#define NET_ASSIGN_OR_RETURN(lhs, expr)         \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = std::move(*lhs##_or)

absl::Status Malformed(absl::string_view what) {
  return Error(ErrorCode::kInvalidArgument, absl::StrCat("malformed message: ", what));
}

capnp::ReaderOptions Options(uint64_t max_bytes) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = max_bytes / sizeof(capnp::word);
  options.nestingLimit = kNestingLimit;
  return options;
}

capnp::Data::Reader AsData(absl::string_view bytes) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size());
}
std::string ToString(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}
std::string ToString(capnp::Text::Reader text) { return std::string(text.cStr(), text.size()); }
capnp::Text::Reader AsText(const std::string& text) {
  return capnp::Text::Reader(text.c_str(), text.size());
}

// Runs a decoder, turning a Cap'n Proto exception (traversal or nesting limit exceeded, a
// truncated or out-of-bounds pointer, text without its NUL) into kInvalidArgument.
template <typename T, typename F>
absl::StatusOr<T> Guarded(F&& decode) {
  absl::StatusOr<T> result = absl::UnknownError("not decoded");
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] { result = decode(); })) {
    return Malformed(exception->getDescription().cStr());
  }
  return result;
}

// An element of a zero-size struct list costs one word of the traversal limit yet decodes to a
// whole struct, so a few bytes could claim millions of them (a 97-byte range reply became a
// 2.9 GB reserve of KeyValues; found by tools/fuzz, kept in testdata/fuzz/client_message/). No
// encoder of these schemas writes zero-size elements: such a list is malformed. Throws, and
// Guarded turns it into kInvalidArgument.
template <typename ListReader>
void RequireSizedElements(ListReader list) {
  if (list.size() == 0) return;
  const capnp::AnyStruct::Reader first = list[0];
  KJ_REQUIRE(first.getDataSection().size() > 0 || first.getPointerSection().size() > 0,
             "a list of zero-size structs", list.size());
}

// An enum stored as UInt8, checked against its last value.
template <typename Enum>
absl::StatusOr<Enum> EnumFrom(uint8_t value, Enum last, absl::string_view field) {
  if (value > static_cast<uint8_t>(last)) return Malformed(absl::StrCat(field, " ", value));
  return static_cast<Enum>(value);
}

// --- Raft ---------------------------------------------------------------------------------------

void IdsToCapnp(const std::vector<raft::NodeId>& ids, capnp::List<uint64_t>::Builder out) {
  for (size_t i = 0; i < ids.size(); ++i) out.set(i, ids[i]);
}

absl::StatusOr<std::vector<raft::NodeId>> DecodeIds(capnp::List<uint64_t>::Reader in,
                                                    absl::string_view field) {
  std::vector<raft::NodeId> ids;
  ids.reserve(in.size());
  for (uint64_t id : in) {
    if (id == raft::kNoNode) return Malformed(absl::StrCat(field, ": node 0"));
    if (!ids.empty() && id <= ids.back()) {
      return Malformed(absl::StrCat(field, ": not sorted or duplicate node ", id));
    }
    ids.push_back(id);
  }
  return ids;
}

bool Contains(const std::vector<raft::NodeId>& sorted, raft::NodeId id) {
  return std::binary_search(sorted.begin(), sorted.end(), id);
}

absl::StatusOr<raft::ConfState> DecodeConfState(rpc::ConfState::Reader in) {
  raft::ConfState cs;
  NET_ASSIGN_OR_RETURN(voters, DecodeIds(in.getVoters(), "snapshot voters"));
  NET_ASSIGN_OR_RETURN(outgoing, DecodeIds(in.getVotersOutgoing(), "snapshot outgoing voters"));
  NET_ASSIGN_OR_RETURN(learners, DecodeIds(in.getLearners(), "snapshot learners"));
  NET_ASSIGN_OR_RETURN(learners_next, DecodeIds(in.getLearnersNext(), "snapshot next learners"));
  if (voters.empty()) return Malformed("snapshot configuration without voters");
  for (raft::NodeId id : learners) {
    if (Contains(voters, id) || Contains(outgoing, id)) {
      return Malformed(absl::StrCat("snapshot learner ", id, " is also a voter"));
    }
  }
  // learners_next are outgoing voters that turn learners when the joint state is left.
  for (raft::NodeId id : learners_next) {
    if (!Contains(outgoing, id) || Contains(voters, id)) {
      return Malformed(absl::StrCat("snapshot next learner ", id, " is not an outgoing voter"));
    }
  }
  cs.voters = std::move(voters);
  cs.voters_outgoing = std::move(outgoing);
  cs.learners = std::move(learners);
  cs.learners_next = std::move(learners_next);
  cs.auto_leave = in.getAutoLeave();
  return cs;
}

absl::StatusOr<raft::Message> DecodeMessage(rpc::Message::Reader in) {
  raft::Message m;
  NET_ASSIGN_OR_RETURN(
      type, EnumFrom(in.getType(), raft::MessageType::kReadIndexResp, "raft message type"));
  m.type = type;
  m.to = in.getTo();
  m.from = in.getFrom();
  if (m.to == raft::kNoNode || m.from == raft::kNoNode) {
    return Malformed(absl::StrCat("raft message from ", m.from, " to ", m.to));
  }
  m.term = in.getTerm();
  m.log_term = in.getLogTerm();
  m.index = in.getIndex();
  m.commit = in.getCommit();
  m.reject = in.getReject();
  m.reject_hint = in.getRejectHint();
  auto entries = in.getEntries();
  RequireSizedElements(entries);
  m.entries.reserve(entries.size());
  for (auto e : entries) {
    raft::Entry entry;
    entry.term = e.getTerm();
    entry.index = e.getIndex();
    NET_ASSIGN_OR_RETURN(entry_type,
                         EnumFrom(e.getType(), raft::EntryType::kConfChange, "raft entry type"));
    entry.type = entry_type;
    auto data = e.getData();
    entry.data =
        raft::Bytes(absl::string_view(reinterpret_cast<const char*>(data.begin()), data.size()));
    if (m.type == raft::MessageType::kApp) {
      const raft::Index expected = m.entries.empty() ? m.index + 1 : m.entries.back().index + 1;
      if (entry.index != expected) {
        return Malformed(absl::StrCat("append entry index ", entry.index, ", expected ", expected));
      }
      const raft::Term floor = m.entries.empty() ? 0 : m.entries.back().term;
      if (entry.term < floor || entry.term > m.term) {
        return Malformed(absl::StrCat("append entry ", entry.index, " of term ", entry.term,
                                      " in a message of term ", m.term));
      }
    }
    m.entries.push_back(std::move(entry));
  }
  if (in.getHasSnapshot() != (m.type == raft::MessageType::kSnap)) {
    return Malformed(absl::StrCat("snapshot metadata ", in.getHasSnapshot() ? "on" : "missing on",
                                  " a message of type ", raft::MessageTypeName(m.type)));
  }
  if (in.getHasSnapshot()) {
    auto meta = in.getSnapshot();
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata.index = meta.getIndex();
    snapshot->metadata.term = meta.getTerm();
    NET_ASSIGN_OR_RETURN(conf_state, DecodeConfState(meta.getConfState()));
    snapshot->metadata.conf_state = std::move(conf_state);
    m.snapshot = std::move(snapshot);
  }
  auto context = in.getContext();
  m.context = raft::Bytes(
      absl::string_view(reinterpret_cast<const char*>(context.begin()), context.size()));
  return m;
}

// --- Values of the client API -------------------------------------------------------------------

server::ResponseHeader DecodeHeader(rpc::Header::Reader in) {
  server::ResponseHeader h;
  h.member_id = in.getMemberId();
  h.revision = in.getRevision();
  h.raft_term = in.getRaftTerm();
  return h;
}

mvcc::KeyValue DecodeKeyValue(rpc::KeyValue::Reader in) {
  mvcc::KeyValue kv;
  kv.key = ToString(in.getKey());
  kv.create_revision = in.getCreateRevision();
  kv.mod_revision = in.getModRevision();
  kv.version = in.getVersion();
  kv.value = ToString(in.getValue());
  kv.lease = in.getLease();
  return kv;
}

std::vector<mvcc::KeyValue> DecodeKeyValues(capnp::List<rpc::KeyValue>::Reader in) {
  std::vector<mvcc::KeyValue> kvs;
  RequireSizedElements(in);
  kvs.reserve(in.size());
  for (auto kv : in) kvs.push_back(DecodeKeyValue(kv));
  return kvs;
}

void KeyValuesToCapnp(const std::vector<mvcc::KeyValue>& in,
                      capnp::List<rpc::KeyValue>::Builder out) {
  for (size_t i = 0; i < in.size(); ++i) ToCapnp(in[i], out[i]);
}

absl::StatusOr<mvcc::RangeRequest> DecodeRange(rpc::RangeRequest::Reader in) {
  mvcc::RangeRequest r;
  NET_ASSIGN_OR_RETURN(order, EnumFrom(in.getSortOrder(), mvcc::SortOrder::kDescend, "sort order"));
  NET_ASSIGN_OR_RETURN(target,
                       EnumFrom(in.getSortTarget(), mvcc::SortTarget::kValue, "sort target"));
  r.key = ToString(in.getKey());
  r.range_end = ToString(in.getRangeEnd());
  r.limit = in.getLimit();
  r.revision = in.getRevision();
  r.sort_order = order;
  r.sort_target = target;
  r.serializable = in.getSerializable();
  r.keys_only = in.getKeysOnly();
  r.count_only = in.getCountOnly();
  r.min_mod_revision = in.getMinModRevision();
  r.max_mod_revision = in.getMaxModRevision();
  r.min_create_revision = in.getMinCreateRevision();
  r.max_create_revision = in.getMaxCreateRevision();
  return r;
}

mvcc::PutRequest DecodePut(rpc::PutRequest::Reader in) {
  mvcc::PutRequest p;
  p.key = ToString(in.getKey());
  p.value = ToString(in.getValue());
  p.lease = in.getLease();
  p.prev_kv = in.getPrevKv();
  p.ignore_value = in.getIgnoreValue();
  p.ignore_lease = in.getIgnoreLease();
  return p;
}

mvcc::DeleteRangeRequest DecodeDeleteRange(rpc::DeleteRangeRequest::Reader in) {
  mvcc::DeleteRangeRequest d;
  d.key = ToString(in.getKey());
  d.range_end = ToString(in.getRangeEnd());
  d.prev_kv = in.getPrevKv();
  return d;
}

// `depth`: how many txns enclose this one (0 for a request's own txn), as server::FromProto.
absl::StatusOr<mvcc::TxnRequest> DecodeTxn(rpc::TxnRequest::Reader in, int depth) {
  if (depth > server::kMaxTxnDepth) {
    return Malformed(absl::StrCat("txn nested deeper than ", server::kMaxTxnDepth));
  }
  mvcc::TxnRequest out;
  RequireSizedElements(in.getCompare());
  for (auto c : in.getCompare()) {
    mvcc::Compare compare;
    NET_ASSIGN_OR_RETURN(
        result, EnumFrom(c.getResult(), mvcc::Compare::Result::kNotEqual, "compare result"));
    NET_ASSIGN_OR_RETURN(target,
                         EnumFrom(c.getTarget(), mvcc::Compare::Target::kLease, "compare target"));
    compare.result = result;
    compare.target = target;
    compare.key = ToString(c.getKey());
    compare.range_end = ToString(c.getRangeEnd());
    compare.number = c.getNumber();
    compare.value = ToString(c.getValue());
    out.compare.push_back(std::move(compare));
  }
  auto ops = [depth](capnp::List<rpc::RequestOp>::Reader from,
                     std::vector<mvcc::RequestOp>* to) -> absl::Status {
    RequireSizedElements(from);
    to->reserve(from.size());
    for (auto p : from) {
      mvcc::RequestOp op;
      switch (p.which()) {
        case rpc::RequestOp::RANGE: {
          NET_ASSIGN_OR_RETURN(range, DecodeRange(p.getRange()));
          op.kind = mvcc::RequestOp::Kind::kRange;
          op.range = std::move(range);
          break;
        }
        case rpc::RequestOp::PUT:
          op.kind = mvcc::RequestOp::Kind::kPut;
          op.put = DecodePut(p.getPut());
          break;
        case rpc::RequestOp::DELETE_RANGE:
          op.kind = mvcc::RequestOp::Kind::kDeleteRange;
          op.delete_range = DecodeDeleteRange(p.getDeleteRange());
          break;
        case rpc::RequestOp::TXN: {
          NET_ASSIGN_OR_RETURN(nested, DecodeTxn(p.getTxn(), depth + 1));
          op.kind = mvcc::RequestOp::Kind::kTxn;
          op.txn = std::make_shared<mvcc::TxnRequest>(std::move(nested));
          break;
        }
        default:
          return Malformed(absl::StrCat("txn operation of unknown kind ", p.which()));
      }
      to->push_back(std::move(op));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = ops(in.getSuccess(), &out.success); !s.ok()) return s;
  if (absl::Status s = ops(in.getFailure(), &out.failure); !s.ok()) return s;
  return out;
}

mvcc::RangeResponse DecodeRangeResponse(rpc::RangeResponse::Reader in, mvcc::Revision revision) {
  mvcc::RangeResponse r;
  r.revision = revision;
  r.kvs = DecodeKeyValues(in.getKvs());
  r.more = in.getMore();
  r.count = in.getCount();
  return r;
}

mvcc::PutResponse DecodePutResponse(rpc::PutResponse::Reader in, mvcc::Revision revision) {
  mvcc::PutResponse p;
  p.revision = revision;
  if (in.getHasPrevKv()) p.prev_kv = DecodeKeyValue(in.getPrevKv());
  return p;
}

mvcc::DeleteRangeResponse DecodeDeleteRangeResponse(rpc::DeleteRangeResponse::Reader in,
                                                    mvcc::Revision revision) {
  mvcc::DeleteRangeResponse d;
  d.revision = revision;
  d.deleted = in.getDeleted();
  d.prev_kvs = DecodeKeyValues(in.getPrevKvs());
  return d;
}

absl::StatusOr<mvcc::TxnResponse> DecodeTxnResponse(rpc::TxnResponse::Reader in,
                                                    mvcc::Revision revision, int depth) {
  if (depth > server::kMaxTxnDepth) {
    return Malformed(absl::StrCat("txn response nested deeper than ", server::kMaxTxnDepth));
  }
  mvcc::TxnResponse out;
  out.revision = revision;
  out.succeeded = in.getSucceeded();
  auto responses = in.getResponses();
  RequireSizedElements(responses);
  out.responses.reserve(responses.size());
  for (auto p : responses) {
    mvcc::ResponseOp op;
    switch (p.which()) {
      case rpc::ResponseOp::RANGE:
        op.kind = mvcc::RequestOp::Kind::kRange;
        op.range = DecodeRangeResponse(p.getRange(), revision);
        break;
      case rpc::ResponseOp::PUT:
        op.kind = mvcc::RequestOp::Kind::kPut;
        op.put = DecodePutResponse(p.getPut(), revision);
        break;
      case rpc::ResponseOp::DELETE_RANGE:
        op.kind = mvcc::RequestOp::Kind::kDeleteRange;
        op.delete_range = DecodeDeleteRangeResponse(p.getDeleteRange(), revision);
        break;
      case rpc::ResponseOp::TXN: {
        NET_ASSIGN_OR_RETURN(nested, DecodeTxnResponse(p.getTxn(), revision, depth + 1));
        op.kind = mvcc::RequestOp::Kind::kTxn;
        op.txn = std::make_shared<mvcc::TxnResponse>(std::move(nested));
        break;
      }
      default:
        return Malformed(absl::StrCat("txn response of unknown kind ", p.which()));
    }
    out.responses.push_back(std::move(op));
  }
  return out;
}

absl::StatusOr<mvcc::WatchRequest> DecodeWatchRequest(rpc::WatchRequest::Reader in) {
  mvcc::WatchRequest w;
  w.key = ToString(in.getKey());
  w.range_end = ToString(in.getRangeEnd());
  w.start_revision = in.getStartRevision();
  w.no_put = in.getNoPut();
  w.no_delete = in.getNoDelete();
  w.prev_kv = in.getPrevKv();
  w.progress_notify = in.getProgressNotify();
  return w;
}

absl::StatusOr<mvcc::WatchResponse> DecodeWatchResponse(rpc::WatchResponse::Reader in) {
  mvcc::WatchResponse w;
  w.watch_id = in.getWatchId();
  w.header_revision = in.getHeaderRevision();
  auto events = in.getEvents();
  RequireSizedElements(events);
  w.events.reserve(events.size());
  for (auto e : events) {
    mvcc::Event event;
    NET_ASSIGN_OR_RETURN(type, EnumFrom(e.getType(), mvcc::Event::Type::kDelete, "event type"));
    event.type = type;
    event.kv = DecodeKeyValue(e.getKv());
    if (e.getHasPrevKv()) event.prev_kv = DecodeKeyValue(e.getPrevKv());
    w.events.push_back(std::move(event));
  }
  w.created = in.getCreated();
  w.canceled = in.getCanceled();
  w.compact_revision = in.getCompactRevision();
  w.cancel_reason = ToString(in.getCancelReason());
  w.progress = in.getProgress();
  return w;
}

server::Member DecodeMember(rpc::Member::Reader in) {
  server::Member m;
  m.id = in.getId();
  m.name = ToString(in.getName());
  for (auto url : in.getPeerUrls()) m.peer_urls.push_back(ToString(url));
  m.is_learner = in.getIsLearner();
  return m;
}

std::vector<server::Member> DecodeMembers(capnp::List<rpc::Member>::Reader in) {
  std::vector<server::Member> members;
  RequireSizedElements(in);
  members.reserve(in.size());
  for (auto m : in) members.push_back(DecodeMember(m));
  return members;
}

void MembersToCapnp(const std::vector<server::Member>& in, capnp::List<rpc::Member>::Builder out) {
  for (size_t i = 0; i < in.size(); ++i) ToCapnp(in[i], out[i]);
}

absl::StatusOr<server::Alarm> DecodeAlarm(rpc::Alarm::Reader in) {
  if (in.getType() != static_cast<uint8_t>(server::AlarmType::kNoSpace)) {
    return Malformed(absl::StrCat("alarm type ", in.getType()));
  }
  server::Alarm a;
  a.member_id = in.getMemberId();
  a.type = server::AlarmType::kNoSpace;
  return a;
}

absl::StatusOr<std::vector<server::Alarm>> DecodeAlarms(capnp::List<rpc::Alarm>::Reader in) {
  std::vector<server::Alarm> alarms;
  RequireSizedElements(in);
  alarms.reserve(in.size());
  for (auto a : in) {
    NET_ASSIGN_OR_RETURN(alarm, DecodeAlarm(a));
    alarms.push_back(alarm);
  }
  return alarms;
}

void AlarmsToCapnp(const std::vector<server::Alarm>& in, capnp::List<rpc::Alarm>::Builder out) {
  for (size_t i = 0; i < in.size(); ++i) ToCapnp(in[i], out[i]);
}

lease::LeaseInfo DecodeLeaseInfo(rpc::LeaseInfo::Reader in) {
  lease::LeaseInfo l;
  l.id = in.getId();
  l.granted_ttl_seconds = in.getGrantedTtlSeconds();
  l.remaining_ttl_seconds = in.getRemainingTtlSeconds();
  for (auto key : in.getKeys()) l.keys.push_back(ToString(key));
  return l;
}

// --- Client methods -----------------------------------------------------------------------------

server::Request RequestOf(server::RequestType type) {
  server::Request r;
  r.type = type;
  return r;
}

// The status and header every reply carries; the method's own fields only when OK.
template <typename Results>
bool FillStatusAndHeader(const server::Response& in, Results out) {
  ToCapnp(in.status, out.initStatus());
  ToCapnp(in.header, out.initHeader());
  return in.status.ok();
}

// The status and header of a reply, as a Response of `type` with nothing else yet.
template <typename Results>
server::Response DecodeStatusAndHeader(Results in, server::RequestType type) {
  server::Response r;
  r.type = type;
  r.status = StatusFromCapnp(in.getStatus());
  r.header = DecodeHeader(in.getHeader());
  return r;
}

// Replies that carry only a status and a header.
template <typename Results>
absl::StatusOr<server::Response> DecodeBare(Results in, server::RequestType type) {
  return Guarded<server::Response>(
      [&]() -> absl::StatusOr<server::Response> { return DecodeStatusAndHeader(in, type); });
}

// Replies that list the members.
template <typename Results>
absl::StatusOr<server::Response> DecodeMembersReply(Results in, server::RequestType type) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, type);
    if (r.status.ok()) r.members = DecodeMembers(in.getMembers());
    return r;
  });
}

// Replies that list the alarms.
template <typename Results>
absl::StatusOr<server::Response> DecodeAlarmsReply(Results in, server::RequestType type) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, type);
    if (r.status.ok()) {
      NET_ASSIGN_OR_RETURN(alarms, DecodeAlarms(in.getAlarms()));
      r.alarms = std::move(alarms);
    }
    return r;
  });
}

}  // namespace

// --- Limits -------------------------------------------------------------------------------------

capnp::ReaderOptions RequestReaderOptions(uint64_t max_request_bytes) {
  return Options(max_request_bytes + kRequestEnvelopeBytes);
}
capnp::ReaderOptions ResponseReaderOptions() { return Options(kMaxResponseBytes); }
capnp::ReaderOptions PeerReaderOptions() { return Options(kMaxPeerMessageBytes); }

// --- Raft ---------------------------------------------------------------------------------------

void ToCapnp(const raft::Message& in, rpc::Message::Builder out) {
  out.setType(static_cast<uint8_t>(in.type));
  out.setTo(in.to);
  out.setFrom(in.from);
  out.setTerm(in.term);
  out.setLogTerm(in.log_term);
  out.setIndex(in.index);
  out.setCommit(in.commit);
  out.setReject(in.reject);
  out.setRejectHint(in.reject_hint);
  auto entries = out.initEntries(in.entries.size());
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const raft::Entry& e = in.entries[i];
    auto entry = entries[i];
    entry.setTerm(e.term);
    entry.setIndex(e.index);
    entry.setType(static_cast<uint8_t>(e.type));
    entry.setData(AsData(e.data.view()));
  }
  if (in.snapshot != nullptr) {
    out.setHasSnapshot(true);
    const raft::SnapshotMetadata& meta = in.snapshot->metadata;
    auto snapshot = out.initSnapshot();
    snapshot.setIndex(meta.index);
    snapshot.setTerm(meta.term);
    auto cs = snapshot.initConfState();
    IdsToCapnp(meta.conf_state.voters, cs.initVoters(meta.conf_state.voters.size()));
    IdsToCapnp(meta.conf_state.voters_outgoing,
               cs.initVotersOutgoing(meta.conf_state.voters_outgoing.size()));
    IdsToCapnp(meta.conf_state.learners, cs.initLearners(meta.conf_state.learners.size()));
    IdsToCapnp(meta.conf_state.learners_next,
               cs.initLearnersNext(meta.conf_state.learners_next.size()));
    cs.setAutoLeave(meta.conf_state.auto_leave);
  }
  out.setContext(AsData(in.context.view()));
}

absl::StatusOr<raft::Message> FromCapnp(rpc::Message::Reader in) {
  return Guarded<raft::Message>([&] { return DecodeMessage(in); });
}

void ToCapnp(const server::Member& in, rpc::PeerMember::Builder out) {
  out.setId(in.id);
  out.setName(AsText(in.name));
  auto urls = out.initPeerUrls(in.peer_urls.size());
  for (size_t i = 0; i < in.peer_urls.size(); ++i) urls.set(i, AsText(in.peer_urls[i]));
  out.setIsLearner(in.is_learner);
  auto client_urls = out.initClientUrls(in.client_urls.size());
  for (size_t i = 0; i < in.client_urls.size(); ++i) {
    client_urls.set(i, AsText(in.client_urls[i]));
  }
}

absl::StatusOr<server::Member> FromCapnp(rpc::PeerMember::Reader in) {
  return Guarded<server::Member>([&]() -> absl::StatusOr<server::Member> {
    server::Member m;
    m.id = in.getId();
    if (m.id == raft::kNoNode) return Malformed("peer member with id 0");
    m.name = ToString(in.getName());
    for (auto url : in.getPeerUrls()) m.peer_urls.push_back(ToString(url));
    m.is_learner = in.getIsLearner();
    for (auto url : in.getClientUrls()) m.client_urls.push_back(ToString(url));
    return m;
  });
}

bool IsForwardable(server::RequestType type) {
  return type == server::RequestType::kLeaseKeepAlive ||
         type == server::RequestType::kLeaseTimeToLive ||
         type == server::RequestType::kMemberPromote;
}

void ToCapnp(const server::Request& in, rpc::ForwardRequest::Builder out) {
  out.setType(static_cast<uint8_t>(in.type));
  out.setToken(AsText(in.token));
  out.setLeaseId(in.lease_id);
  out.setMemberId(in.member.id);
  out.setCertUser(AsText(in.cert_user));
}

absl::StatusOr<server::Request> FromCapnp(rpc::ForwardRequest::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    const auto type = static_cast<server::RequestType>(in.getType());
    if (!IsForwardable(type)) {
      return Malformed(absl::StrCat("forwarded request of type ", in.getType(),
                                    ", which only the leader's own clients may send"));
    }
    server::Request r;
    r.type = type;
    r.token = ToString(in.getToken());
    r.cert_user = ToString(in.getCertUser());
    if (type == server::RequestType::kMemberPromote) {
      r.member.id = in.getMemberId();
      if (r.member.id == raft::kNoNode) return Malformed("forwarded member promote of member 0");
    } else {
      r.lease_id = in.getLeaseId();
      if (r.lease_id == lease::kNoLease) return Malformed("forwarded lease request of lease 0");
    }
    return r;
  });
}

void ToCapnp(const server::Response& in, rpc::ForwardResponse::Builder out) {
  const std::string code(ErrorCodeName(CodeOf(in.status)));
  out.setCode(AsText(code));
  out.setMessage(AsText(std::string(in.status.message())));
  out.setLeaseId(in.lease.id);
  out.setGrantedTtlSeconds(in.lease.granted_ttl_seconds);
  out.setRemainingTtlSeconds(in.lease.remaining_ttl_seconds);
  auto keys = out.initKeys(in.lease.keys.size());
  for (size_t i = 0; i < in.lease.keys.size(); ++i) {
    keys.set(i, AsData(in.lease.keys[i]));
  }
  auto members = out.initMembers(in.members.size());
  for (size_t i = 0; i < in.members.size(); ++i) ToCapnp(in.members[i], members[i]);
}

absl::StatusOr<server::Response> FromCapnp(rpc::ForwardResponse::Reader in,
                                           server::RequestType type) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r;
    r.type = type;
    const std::string name = ToString(in.getCode());
    const ErrorCode code = ErrorCodeFromName(name);
    if (ErrorCodeName(code) != name) {
      return Malformed(absl::StrCat("forwarded response with unknown code ", name));
    }
    if (code != ErrorCode::kOk) {
      // The message is the leader's whole status text ("CODE: message"): keep it as it was.
      std::string message = ToString(in.getMessage());
      const std::string prefix = absl::StrCat(name, ": ");
      if (absl::StartsWith(message, prefix)) message = message.substr(prefix.size());
      r.status = Error(code, message);
      return r;
    }
    r.lease.id = in.getLeaseId();
    r.lease.granted_ttl_seconds = in.getGrantedTtlSeconds();
    r.lease.remaining_ttl_seconds = in.getRemainingTtlSeconds();
    for (auto key : in.getKeys()) r.lease.keys.push_back(ToString(key));
    RequireSizedElements(in.getMembers());
    for (auto m : in.getMembers()) {
      absl::StatusOr<server::Member> member = FromCapnp(m);
      if (!member.ok()) return member.status();
      r.members.push_back(std::move(*member));
    }
    return r;
  });
}

// --- Values -------------------------------------------------------------------------------------

void ToCapnp(const absl::Status& in, rpc::Status::Builder out) {
  const std::string code(ErrorCodeName(CodeOf(in)));
  out.setCode(AsText(code));
  if (in.ok()) return;
  // Error() writes "CODE: message"; the wire carries the code once. A status that did not come
  // from Error() keeps its canonical code in the text, as CodeOf files it as INVALID_ARGUMENT.
  const std::string prefix = absl::StrCat(code, ": ");
  const std::string message =
      absl::StartsWith(in.message(), prefix)
          ? std::string(in.message().substr(prefix.size()))
          : absl::StrCat(absl::StatusCodeToString(in.code()), ": ", in.message());
  out.setMessage(AsText(message));
}

absl::Status StatusFromCapnp(rpc::Status::Reader in) {
  const std::string name = ToString(in.getCode());
  const ErrorCode code = ErrorCodeFromName(name);
  if (ErrorCodeName(code) != name) {
    return Error(ErrorCode::kInvalidArgument,
                 absl::StrCat("unknown status code ", name, ": ", ToString(in.getMessage())));
  }
  return Error(code, ToString(in.getMessage()));
}

void ToCapnp(const server::ResponseHeader& in, rpc::Header::Builder out) {
  out.setMemberId(in.member_id);
  out.setRevision(in.revision);
  out.setRaftTerm(in.raft_term);
}

void ToCapnp(const mvcc::KeyValue& in, rpc::KeyValue::Builder out) {
  out.setKey(AsData(in.key));
  out.setCreateRevision(in.create_revision);
  out.setModRevision(in.mod_revision);
  out.setVersion(in.version);
  out.setValue(AsData(in.value));
  out.setLease(in.lease);
}

void ToCapnp(const mvcc::RangeRequest& in, rpc::RangeRequest::Builder out) {
  out.setKey(AsData(in.key));
  out.setRangeEnd(AsData(in.range_end));
  out.setLimit(in.limit);
  out.setRevision(in.revision);
  out.setSortOrder(static_cast<uint8_t>(in.sort_order));
  out.setSortTarget(static_cast<uint8_t>(in.sort_target));
  out.setSerializable(in.serializable);
  out.setKeysOnly(in.keys_only);
  out.setCountOnly(in.count_only);
  out.setMinModRevision(in.min_mod_revision);
  out.setMaxModRevision(in.max_mod_revision);
  out.setMinCreateRevision(in.min_create_revision);
  out.setMaxCreateRevision(in.max_create_revision);
}

void ToCapnp(const mvcc::PutRequest& in, rpc::PutRequest::Builder out) {
  out.setKey(AsData(in.key));
  out.setValue(AsData(in.value));
  out.setLease(in.lease);
  out.setPrevKv(in.prev_kv);
  out.setIgnoreValue(in.ignore_value);
  out.setIgnoreLease(in.ignore_lease);
}

void ToCapnp(const mvcc::DeleteRangeRequest& in, rpc::DeleteRangeRequest::Builder out) {
  out.setKey(AsData(in.key));
  out.setRangeEnd(AsData(in.range_end));
  out.setPrevKv(in.prev_kv);
}

void ToCapnp(const mvcc::TxnRequest& in, rpc::TxnRequest::Builder out) {
  auto compares = out.initCompare(in.compare.size());
  for (size_t i = 0; i < in.compare.size(); ++i) {
    const mvcc::Compare& c = in.compare[i];
    auto compare = compares[i];
    compare.setResult(static_cast<uint8_t>(c.result));
    compare.setTarget(static_cast<uint8_t>(c.target));
    compare.setKey(AsData(c.key));
    compare.setRangeEnd(AsData(c.range_end));
    compare.setNumber(c.number);
    compare.setValue(AsData(c.value));
  }
  auto ops = [](const std::vector<mvcc::RequestOp>& from, capnp::List<rpc::RequestOp>::Builder to) {
    for (size_t i = 0; i < from.size(); ++i) {
      const mvcc::RequestOp& op = from[i];
      switch (op.kind) {
        case mvcc::RequestOp::Kind::kRange:
          ToCapnp(op.range, to[i].initRange());
          break;
        case mvcc::RequestOp::Kind::kPut:
          ToCapnp(op.put, to[i].initPut());
          break;
        case mvcc::RequestOp::Kind::kDeleteRange:
          ToCapnp(op.delete_range, to[i].initDeleteRange());
          break;
        case mvcc::RequestOp::Kind::kTxn: {
          // An absent nested txn is an empty one: it must still decode as a txn.
          auto txn = to[i].initTxn();
          if (op.txn != nullptr) ToCapnp(*op.txn, txn);
          break;
        }
      }
    }
  };
  ops(in.success, out.initSuccess(in.success.size()));
  ops(in.failure, out.initFailure(in.failure.size()));
}

void ToCapnp(const mvcc::RangeResponse& in, rpc::RangeResponse::Builder out) {
  KeyValuesToCapnp(in.kvs, out.initKvs(in.kvs.size()));
  out.setMore(in.more);
  out.setCount(in.count);
}

void ToCapnp(const mvcc::PutResponse& in, rpc::PutResponse::Builder out) {
  if (in.prev_kv.has_value()) {
    out.setHasPrevKv(true);
    ToCapnp(*in.prev_kv, out.initPrevKv());
  }
}

void ToCapnp(const mvcc::DeleteRangeResponse& in, rpc::DeleteRangeResponse::Builder out) {
  out.setDeleted(in.deleted);
  KeyValuesToCapnp(in.prev_kvs, out.initPrevKvs(in.prev_kvs.size()));
}

void ToCapnp(const mvcc::TxnResponse& in, rpc::TxnResponse::Builder out) {
  out.setSucceeded(in.succeeded);
  auto responses = out.initResponses(in.responses.size());
  for (size_t i = 0; i < in.responses.size(); ++i) {
    const mvcc::ResponseOp& op = in.responses[i];
    switch (op.kind) {
      case mvcc::RequestOp::Kind::kRange:
        ToCapnp(op.range, responses[i].initRange());
        break;
      case mvcc::RequestOp::Kind::kPut:
        ToCapnp(op.put, responses[i].initPut());
        break;
      case mvcc::RequestOp::Kind::kDeleteRange:
        ToCapnp(op.delete_range, responses[i].initDeleteRange());
        break;
      case mvcc::RequestOp::Kind::kTxn: {
        auto txn = responses[i].initTxn();
        if (op.txn != nullptr) ToCapnp(*op.txn, txn);
        break;
      }
    }
  }
}

void ToCapnp(const mvcc::WatchRequest& in, rpc::WatchRequest::Builder out) {
  out.setKey(AsData(in.key));
  out.setRangeEnd(AsData(in.range_end));
  out.setStartRevision(in.start_revision);
  out.setNoPut(in.no_put);
  out.setNoDelete(in.no_delete);
  out.setPrevKv(in.prev_kv);
  out.setProgressNotify(in.progress_notify);
}

void ToCapnp(const mvcc::WatchResponse& in, rpc::WatchResponse::Builder out) {
  out.setWatchId(in.watch_id);
  out.setHeaderRevision(in.header_revision);
  auto events = out.initEvents(in.events.size());
  for (size_t i = 0; i < in.events.size(); ++i) {
    const mvcc::Event& e = in.events[i];
    events[i].setType(static_cast<uint8_t>(e.type));
    ToCapnp(e.kv, events[i].initKv());
    if (e.prev_kv.has_value()) {
      events[i].setHasPrevKv(true);
      ToCapnp(*e.prev_kv, events[i].initPrevKv());
    }
  }
  out.setCreated(in.created);
  out.setCanceled(in.canceled);
  out.setCompactRevision(in.compact_revision);
  out.setCancelReason(AsText(in.cancel_reason));
  out.setProgress(in.progress);
}

void ToCapnp(const server::Member& in, rpc::Member::Builder out) {
  out.setId(in.id);
  out.setName(AsText(in.name));
  auto urls = out.initPeerUrls(in.peer_urls.size());
  for (size_t i = 0; i < in.peer_urls.size(); ++i) urls.set(i, AsText(in.peer_urls[i]));
  out.setIsLearner(in.is_learner);
}

void ToCapnp(const server::Alarm& in, rpc::Alarm::Builder out) {
  out.setMemberId(in.member_id);
  out.setType(static_cast<uint8_t>(in.type));
}

void ToCapnp(const lease::LeaseInfo& in, rpc::LeaseInfo::Builder out) {
  out.setId(in.id);
  out.setGrantedTtlSeconds(in.granted_ttl_seconds);
  out.setRemainingTtlSeconds(in.remaining_ttl_seconds);
  auto keys = out.initKeys(in.keys.size());
  for (size_t i = 0; i < in.keys.size(); ++i) keys.set(i, AsData(in.keys[i]));
}

absl::StatusOr<server::ResponseHeader> FromCapnp(rpc::Header::Reader in) {
  return Guarded<server::ResponseHeader>([&] { return DecodeHeader(in); });
}
absl::StatusOr<mvcc::KeyValue> FromCapnp(rpc::KeyValue::Reader in) {
  return Guarded<mvcc::KeyValue>([&] { return DecodeKeyValue(in); });
}
absl::StatusOr<mvcc::RangeRequest> FromCapnp(rpc::RangeRequest::Reader in) {
  return Guarded<mvcc::RangeRequest>([&] { return DecodeRange(in); });
}
absl::StatusOr<mvcc::PutRequest> FromCapnp(rpc::PutRequest::Reader in) {
  return Guarded<mvcc::PutRequest>([&] { return DecodePut(in); });
}
absl::StatusOr<mvcc::DeleteRangeRequest> FromCapnp(rpc::DeleteRangeRequest::Reader in) {
  return Guarded<mvcc::DeleteRangeRequest>([&] { return DecodeDeleteRange(in); });
}
absl::StatusOr<mvcc::TxnRequest> FromCapnp(rpc::TxnRequest::Reader in) {
  return Guarded<mvcc::TxnRequest>([&] { return DecodeTxn(in, 0); });
}
absl::StatusOr<mvcc::RangeResponse> FromCapnp(rpc::RangeResponse::Reader in,
                                              mvcc::Revision revision) {
  return Guarded<mvcc::RangeResponse>([&] { return DecodeRangeResponse(in, revision); });
}
absl::StatusOr<mvcc::PutResponse> FromCapnp(rpc::PutResponse::Reader in, mvcc::Revision revision) {
  return Guarded<mvcc::PutResponse>([&] { return DecodePutResponse(in, revision); });
}
absl::StatusOr<mvcc::DeleteRangeResponse> FromCapnp(rpc::DeleteRangeResponse::Reader in,
                                                    mvcc::Revision revision) {
  return Guarded<mvcc::DeleteRangeResponse>(
      [&] { return DecodeDeleteRangeResponse(in, revision); });
}
absl::StatusOr<mvcc::TxnResponse> FromCapnp(rpc::TxnResponse::Reader in, mvcc::Revision revision) {
  return Guarded<mvcc::TxnResponse>([&] { return DecodeTxnResponse(in, revision, 0); });
}
absl::StatusOr<mvcc::WatchRequest> FromCapnp(rpc::WatchRequest::Reader in) {
  return Guarded<mvcc::WatchRequest>([&] { return DecodeWatchRequest(in); });
}
absl::StatusOr<mvcc::WatchResponse> FromCapnp(rpc::WatchResponse::Reader in) {
  return Guarded<mvcc::WatchResponse>([&] { return DecodeWatchResponse(in); });
}
absl::StatusOr<server::Member> FromCapnp(rpc::Member::Reader in) {
  return Guarded<server::Member>([&] { return DecodeMember(in); });
}
absl::StatusOr<server::Alarm> FromCapnp(rpc::Alarm::Reader in) {
  return Guarded<server::Alarm>([&] { return DecodeAlarm(in); });
}
absl::StatusOr<lease::LeaseInfo> FromCapnp(rpc::LeaseInfo::Reader in) {
  return Guarded<lease::LeaseInfo>([&] { return DecodeLeaseInfo(in); });
}

// --- Client methods: the member's side ----------------------------------------------------------

absl::StatusOr<server::Request> ToRequest(rpc::Kv::RangeParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kRange);
    NET_ASSIGN_OR_RETURN(range, DecodeRange(in.getRequest()));
    r.range = std::move(range);
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Kv::PutParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kPut);
    r.put = DecodePut(in.getRequest());
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Kv::DeleteRangeParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kDeleteRange);
    r.delete_range = DecodeDeleteRange(in.getRequest());
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Kv::TxnParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kTxn);
    NET_ASSIGN_OR_RETURN(txn, DecodeTxn(in.getRequest(), 0));
    r.txn = std::move(txn);
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Kv::CompactParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kCompact);
    r.revision = in.getRevision();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Lease::GrantParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kLeaseGrant);
    r.ttl_seconds = in.getTtlSeconds();
    r.lease_id = in.getId();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Lease::RevokeParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kLeaseRevoke);
    r.lease_id = in.getId();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Lease::KeepAliveParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kLeaseKeepAlive);
    r.lease_id = in.getId();
    if (r.lease_id == lease::kNoLease) {
      return Error(ErrorCode::kInvalidArgument, "lease keep-alive: lease id 0");
    }
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Lease::TimeToLiveParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kLeaseTimeToLive);
    r.lease_id = in.getId();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Lease::LeasesParams::Reader) {
  return RequestOf(server::RequestType::kLeaseLeases);
}

absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberListParams::Reader) {
  return RequestOf(server::RequestType::kMemberList);
}

absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberAddParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kMemberAdd);
    for (auto url : in.getPeerUrls()) r.member.peer_urls.push_back(ToString(url));
    r.member.is_learner = in.getIsLearner();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberRemoveParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kMemberRemove);
    r.member.id = in.getId();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberPromoteParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kMemberPromote);
    r.member.id = in.getId();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberReplaceParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kMemberReplace);
    r.member.id = in.getId();
    for (auto url : in.getPeerUrls()) r.member.peer_urls.push_back(ToString(url));
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberUpdateParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kMemberUpdate);
    r.member.id = in.getId();
    for (auto url : in.getPeerUrls()) r.member.peer_urls.push_back(ToString(url));
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::HashParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kHash);
    r.revision = in.getRevision();
    return r;
  });
}

absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::DefragmentParams::Reader) {
  return RequestOf(server::RequestType::kDefragment);
}

absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::AlarmListParams::Reader) {
  return RequestOf(server::RequestType::kAlarmList);
}

absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::AlarmDisarmParams::Reader) {
  return RequestOf(server::RequestType::kAlarmDisarm);
}

absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::MoveLeaderParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    server::Request r = RequestOf(server::RequestType::kMoveLeader);
    r.member.id = in.getTargetId();
    return r;
  });
}

void FillResults(const server::Response& in, rpc::Kv::RangeResults::Builder out) {
  if (FillStatusAndHeader(in, out)) ToCapnp(in.range, out.initResponse());
}
void FillResults(const server::Response& in, rpc::Kv::PutResults::Builder out) {
  if (FillStatusAndHeader(in, out)) ToCapnp(in.put, out.initResponse());
}
void FillResults(const server::Response& in, rpc::Kv::DeleteRangeResults::Builder out) {
  if (FillStatusAndHeader(in, out)) ToCapnp(in.delete_range, out.initResponse());
}
void FillResults(const server::Response& in, rpc::Kv::TxnResults::Builder out) {
  if (FillStatusAndHeader(in, out)) ToCapnp(in.txn, out.initResponse());
}
void FillResults(const server::Response& in, rpc::Kv::CompactResults::Builder out) {
  FillStatusAndHeader(in, out);
}
void FillResults(const server::Response& in, rpc::Lease::GrantResults::Builder out) {
  if (FillStatusAndHeader(in, out)) ToCapnp(in.lease, out.initLease());
}
void FillResults(const server::Response& in, rpc::Lease::RevokeResults::Builder out) {
  FillStatusAndHeader(in, out);
}
void FillResults(const server::Response& in, rpc::KeepAlive::KeepAliveResults::Builder out) {
  if (FillStatusAndHeader(in, out)) out.setTtlSeconds(in.lease.remaining_ttl_seconds);
}
void FillResults(const server::Response& in, rpc::Lease::TimeToLiveResults::Builder out) {
  if (FillStatusAndHeader(in, out)) ToCapnp(in.lease, out.initLease());
}
void FillResults(const server::Response& in, rpc::Lease::LeasesResults::Builder out) {
  if (!FillStatusAndHeader(in, out)) return;
  auto ids = out.initIds(in.leases.size());
  for (size_t i = 0; i < in.leases.size(); ++i) ids.set(i, in.leases[i]);
}
void FillResults(const server::Response& in, rpc::Cluster::MemberListResults::Builder out) {
  if (FillStatusAndHeader(in, out)) MembersToCapnp(in.members, out.initMembers(in.members.size()));
}
void FillResults(const server::Response& in, rpc::Cluster::MemberAddResults::Builder out) {
  if (!FillStatusAndHeader(in, out)) return;
  ToCapnp(in.member, out.initMember());
  MembersToCapnp(in.members, out.initMembers(in.members.size()));
}
void FillResults(const server::Response& in, rpc::Cluster::MemberRemoveResults::Builder out) {
  if (FillStatusAndHeader(in, out)) MembersToCapnp(in.members, out.initMembers(in.members.size()));
}
void FillResults(const server::Response& in, rpc::Cluster::MemberPromoteResults::Builder out) {
  if (FillStatusAndHeader(in, out)) MembersToCapnp(in.members, out.initMembers(in.members.size()));
}
void FillResults(const server::Response& in, rpc::Cluster::MemberReplaceResults::Builder out) {
  if (!FillStatusAndHeader(in, out)) return;
  ToCapnp(in.member, out.initMember());
  MembersToCapnp(in.members, out.initMembers(in.members.size()));
}
void FillResults(const server::Response& in, rpc::Cluster::MemberUpdateResults::Builder out) {
  if (FillStatusAndHeader(in, out)) MembersToCapnp(in.members, out.initMembers(in.members.size()));
}
void FillResults(const server::Response& in, rpc::Maintenance::HashResults::Builder out) {
  if (!FillStatusAndHeader(in, out)) return;
  out.setHash(in.hash.hash);
  out.setCompactRevision(in.hash.compact_revision);
}
void FillResults(const server::Response& in, rpc::Maintenance::DefragmentResults::Builder out) {
  FillStatusAndHeader(in, out);
}
void FillResults(const server::Response& in, rpc::Maintenance::AlarmListResults::Builder out) {
  if (FillStatusAndHeader(in, out)) AlarmsToCapnp(in.alarms, out.initAlarms(in.alarms.size()));
}
void FillResults(const server::Response& in, rpc::Maintenance::AlarmDisarmResults::Builder out) {
  if (FillStatusAndHeader(in, out)) AlarmsToCapnp(in.alarms, out.initAlarms(in.alarms.size()));
}
void FillResults(const server::Response& in, rpc::Maintenance::MoveLeaderResults::Builder out) {
  FillStatusAndHeader(in, out);
}

void FillResults(const MemberStatusInfo& in, const std::string& version,
                 rpc::Maintenance::StatusResults::Builder out) {
  ToCapnp(absl::OkStatus(), out.initStatus());
  auto header = out.initHeader();
  header.setMemberId(in.id);
  header.setRaftTerm(in.term);
  auto member = out.initMember();
  member.setVersion(AsText(version));
  member.setDbSizeBytes(static_cast<int64_t>(in.db_size_bytes));
  member.setLeader(in.leader);
  member.setRaftIndex(in.commit_index);
  member.setRaftTerm(in.term);
  member.setRaftAppliedIndex(in.applied_index);
  member.setIsLearner(in.is_learner);
  auto errors = member.initErrors(in.errors.size());
  for (size_t i = 0; i < in.errors.size(); ++i) errors.set(i, AsText(in.errors[i]));
}

// --- Client methods: the client's side ----------------------------------------------------------

void FillParams(const server::Request& in, rpc::Kv::RangeParams::Builder out) {
  ToCapnp(in.range, out.initRequest());
}
void FillParams(const server::Request& in, rpc::Kv::PutParams::Builder out) {
  ToCapnp(in.put, out.initRequest());
}
void FillParams(const server::Request& in, rpc::Kv::DeleteRangeParams::Builder out) {
  ToCapnp(in.delete_range, out.initRequest());
}
void FillParams(const server::Request& in, rpc::Kv::TxnParams::Builder out) {
  ToCapnp(in.txn, out.initRequest());
}
void FillParams(const server::Request& in, rpc::Kv::CompactParams::Builder out) {
  out.setRevision(in.revision);
}
void FillParams(const server::Request& in, rpc::Lease::GrantParams::Builder out) {
  out.setTtlSeconds(in.ttl_seconds);
  out.setId(in.lease_id);
}
void FillParams(const server::Request& in, rpc::Lease::RevokeParams::Builder out) {
  out.setId(in.lease_id);
}
void FillParams(const server::Request& in, rpc::Lease::KeepAliveParams::Builder out) {
  out.setId(in.lease_id);
}
void FillParams(const server::Request& in, rpc::Lease::TimeToLiveParams::Builder out) {
  out.setId(in.lease_id);
  out.setKeys(true);
}
void FillParams(const server::Request& in, rpc::Cluster::MemberAddParams::Builder out) {
  auto urls = out.initPeerUrls(in.member.peer_urls.size());
  for (size_t i = 0; i < in.member.peer_urls.size(); ++i) {
    urls.set(i, AsText(in.member.peer_urls[i]));
  }
  out.setIsLearner(in.member.is_learner);
}
void FillParams(const server::Request& in, rpc::Cluster::MemberRemoveParams::Builder out) {
  out.setId(in.member.id);
}
void FillParams(const server::Request& in, rpc::Cluster::MemberPromoteParams::Builder out) {
  out.setId(in.member.id);
}
void FillParams(const server::Request& in, rpc::Cluster::MemberReplaceParams::Builder out) {
  out.setId(in.member.id);
  auto urls = out.initPeerUrls(in.member.peer_urls.size());
  for (size_t i = 0; i < in.member.peer_urls.size(); ++i) {
    urls.set(i, AsText(in.member.peer_urls[i]));
  }
}
void FillParams(const server::Request& in, rpc::Cluster::MemberUpdateParams::Builder out) {
  out.setId(in.member.id);
  auto urls = out.initPeerUrls(in.member.peer_urls.size());
  for (size_t i = 0; i < in.member.peer_urls.size(); ++i) {
    urls.set(i, AsText(in.member.peer_urls[i]));
  }
}
void FillParams(const server::Request& in, rpc::Maintenance::HashParams::Builder out) {
  out.setRevision(in.revision);
}
void FillParams(const server::Request& in, rpc::Maintenance::MoveLeaderParams::Builder out) {
  out.setTargetId(in.member.id);
}

absl::StatusOr<server::Response> ToResponse(rpc::Kv::RangeResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kRange);
    if (r.status.ok()) r.range = DecodeRangeResponse(in.getResponse(), r.header.revision);
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Kv::PutResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kPut);
    if (r.status.ok()) r.put = DecodePutResponse(in.getResponse(), r.header.revision);
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Kv::DeleteRangeResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kDeleteRange);
    if (r.status.ok()) {
      r.delete_range = DecodeDeleteRangeResponse(in.getResponse(), r.header.revision);
    }
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Kv::TxnResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kTxn);
    if (r.status.ok()) {
      NET_ASSIGN_OR_RETURN(txn, DecodeTxnResponse(in.getResponse(), r.header.revision, 0));
      r.txn = std::move(txn);
    }
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Kv::CompactResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kCompact);
    if (r.status.ok()) r.compact.revision = r.header.revision;
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Lease::GrantResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kLeaseGrant);
    if (r.status.ok()) r.lease = DecodeLeaseInfo(in.getLease());
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Lease::RevokeResults::Reader in) {
  return DecodeBare(in, server::RequestType::kLeaseRevoke);
}

absl::StatusOr<server::Response> ToResponse(rpc::KeepAlive::KeepAliveResults::Reader in,
                                            lease::LeaseId lease_id) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kLeaseKeepAlive);
    if (r.status.ok()) {
      r.lease.id = lease_id;
      r.lease.granted_ttl_seconds = in.getTtlSeconds();
      r.lease.remaining_ttl_seconds = in.getTtlSeconds();
    }
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Lease::TimeToLiveResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kLeaseTimeToLive);
    if (r.status.ok()) r.lease = DecodeLeaseInfo(in.getLease());
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Lease::LeasesResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kLeaseLeases);
    if (r.status.ok()) {
      for (int64_t id : in.getIds()) r.leases.push_back(id);
    }
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberListResults::Reader in) {
  return DecodeMembersReply(in, server::RequestType::kMemberList);
}

absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberAddResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kMemberAdd);
    if (r.status.ok()) {
      r.member = DecodeMember(in.getMember());
      r.members = DecodeMembers(in.getMembers());
    }
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberRemoveResults::Reader in) {
  return DecodeMembersReply(in, server::RequestType::kMemberRemove);
}

absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberPromoteResults::Reader in) {
  return DecodeMembersReply(in, server::RequestType::kMemberPromote);
}

absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberReplaceResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kMemberReplace);
    if (r.status.ok()) {
      r.member = DecodeMember(in.getMember());
      r.members = DecodeMembers(in.getMembers());
    }
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberUpdateResults::Reader in) {
  return DecodeMembersReply(in, server::RequestType::kMemberUpdate);
}

absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::HashResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kHash);
    if (r.status.ok()) {
      r.hash.hash = in.getHash();
      r.hash.revision = r.header.revision;
      r.hash.compact_revision = in.getCompactRevision();
    }
    return r;
  });
}

absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::DefragmentResults::Reader in) {
  return DecodeBare(in, server::RequestType::kDefragment);
}

absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::AlarmListResults::Reader in) {
  return DecodeAlarmsReply(in, server::RequestType::kAlarmList);
}

absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::AlarmDisarmResults::Reader in) {
  return DecodeAlarmsReply(in, server::RequestType::kAlarmDisarm);
}

absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::MoveLeaderResults::Reader in) {
  return DecodeBare(in, server::RequestType::kMoveLeader);
}

absl::StatusOr<MemberStatusReply> ToMemberStatus(rpc::Maintenance::StatusResults::Reader in) {
  return Guarded<MemberStatusReply>([&]() -> absl::StatusOr<MemberStatusReply> {
    MemberStatusReply reply;
    reply.status = StatusFromCapnp(in.getStatus());
    reply.member.id = in.getHeader().getMemberId();
    if (!reply.status.ok()) return reply;
    auto member = in.getMember();
    reply.version = ToString(member.getVersion());
    reply.member.db_size_bytes = static_cast<uint64_t>(member.getDbSizeBytes());
    reply.member.leader = member.getLeader();
    reply.member.commit_index = member.getRaftIndex();
    reply.member.term = member.getRaftTerm();
    reply.member.applied_index = member.getRaftAppliedIndex();
    reply.member.is_learner = member.getIsLearner();
    for (auto error : member.getErrors()) reply.member.errors.push_back(ToString(error));
    return reply;
  });
}

#undef NET_ASSIGN_OR_RETURN

// ---------------------------------------------------------------------------------------------
// Auth

namespace {

void PermissionToCapnp(const auth::Permission& in, rpc::Permission::Builder out) {
  out.setPermType(static_cast<uint8_t>(in.type));
  out.setKey(AsData(in.key));
  out.setRangeEnd(AsData(in.range_end));
}

absl::StatusOr<auth::Permission> DecodePermission(rpc::Permission::Reader in) {
  auto type = EnumFrom(in.getPermType(), auth::PermissionType::kReadWrite, "permission type");
  if (!type.ok()) return type.status();
  return auth::Permission{*type, ToString(in.getKey()), ToString(in.getRangeEnd())};
}

}  // namespace

absl::StatusOr<server::Request> ToRequest(rpc::Auth::CallParams::Reader in) {
  return Guarded<server::Request>([&]() -> absl::StatusOr<server::Request> {
    auto request = in.getRequest();
    const uint8_t type = request.getType();
    if (type < static_cast<uint8_t>(server::RequestType::kAuthEnable) ||
        type > static_cast<uint8_t>(server::RequestType::kRoleList)) {
      return Malformed(absl::StrCat("auth request type ", type));
    }
    server::Request r = RequestOf(static_cast<server::RequestType>(type));
    r.auth.name = ToString(request.getName());
    r.auth.password = ToString(request.getPassword());
    r.auth.role = ToString(request.getRole());
    auto permission = DecodePermission(request.getPermission());
    if (!permission.ok()) return permission.status();
    r.auth.permission = std::move(*permission);
    r.token = ToString(in.getToken());
    return r;
  });
}

void FillResults(const server::Response& in, rpc::Auth::CallResults::Builder out) {
  if (!FillStatusAndHeader(in, out)) return;
  auto response = out.initResponse();
  response.setToken(AsText(in.token));
  response.setUser(AsText(in.user.name));
  auto roles = response.initRoles(in.user.roles.size());
  for (size_t i = 0; i < in.user.roles.size(); ++i) roles.set(i, AsText(in.user.roles[i]));
  response.setRole(AsText(in.role.name));
  auto permissions = response.initPermissions(in.role.permissions.size());
  for (size_t i = 0; i < in.role.permissions.size(); ++i) {
    PermissionToCapnp(in.role.permissions[i], permissions[i]);
  }
  auto names = response.initNames(in.names.size());
  for (size_t i = 0; i < in.names.size(); ++i) names.set(i, AsText(in.names[i]));
}

void FillParams(const server::Request& in, rpc::Auth::CallParams::Builder out) {
  auto request = out.initRequest();
  request.setType(static_cast<uint8_t>(in.type));
  request.setName(AsText(in.auth.name));
  request.setPassword(AsText(in.auth.password));
  request.setRole(AsText(in.auth.role));
  PermissionToCapnp(in.auth.permission, request.initPermission());
  out.setToken(AsText(in.token));
}

absl::StatusOr<server::Response> ToResponse(rpc::Auth::CallResults::Reader in) {
  return Guarded<server::Response>([&]() -> absl::StatusOr<server::Response> {
    server::Response r = DecodeStatusAndHeader(in, server::RequestType::kAuthEnable);
    if (!r.status.ok()) return r;
    auto response = in.getResponse();
    r.token = ToString(response.getToken());
    r.user.name = ToString(response.getUser());
    for (auto role : response.getRoles()) r.user.roles.push_back(ToString(role));
    r.role.name = ToString(response.getRole());
    for (auto p : response.getPermissions()) {
      auto permission = DecodePermission(p);
      if (!permission.ok()) return permission.status();
      r.role.permissions.push_back(std::move(*permission));
    }
    for (auto name : response.getNames()) r.names.push_back(ToString(name));
    return r;
  });
}

}  // namespace kvstore::net
