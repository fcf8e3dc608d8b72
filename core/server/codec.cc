#include "core/server/codec.h"

#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"

namespace kvstore::server {
namespace {

absl::Status Malformed(absl::string_view what) {
  return Error(ErrorCode::kInvalidArgument, absl::StrCat("malformed request: ", what));
}

}  // namespace

void ToProto(const mvcc::RangeRequest& in, pb::RangeRequest* out) {
  out->set_key(in.key);
  out->set_range_end(in.range_end);
  out->set_limit(in.limit);
  out->set_revision(in.revision);
  out->set_sort_order(static_cast<int32_t>(in.sort_order));
  out->set_sort_target(static_cast<int32_t>(in.sort_target));
  out->set_serializable(in.serializable);
  out->set_keys_only(in.keys_only);
  out->set_count_only(in.count_only);
  out->set_min_mod_revision(in.min_mod_revision);
  out->set_max_mod_revision(in.max_mod_revision);
  out->set_min_create_revision(in.min_create_revision);
  out->set_max_create_revision(in.max_create_revision);
}

void ToProto(const mvcc::PutRequest& in, pb::PutRequest* out) {
  out->set_key(in.key);
  out->set_value(in.value);
  out->set_lease(in.lease);
  out->set_prev_kv(in.prev_kv);
  out->set_ignore_value(in.ignore_value);
  out->set_ignore_lease(in.ignore_lease);
}

void ToProto(const mvcc::DeleteRangeRequest& in, pb::DeleteRangeRequest* out) {
  out->set_key(in.key);
  out->set_range_end(in.range_end);
  out->set_prev_kv(in.prev_kv);
}

void ToProto(const mvcc::TxnRequest& in, pb::TxnRequest* out) {
  for (const mvcc::Compare& c : in.compare) {
    pb::Compare* pc = out->add_compare();
    pc->set_result(static_cast<int32_t>(c.result));
    pc->set_target(static_cast<int32_t>(c.target));
    pc->set_key(c.key);
    pc->set_range_end(c.range_end);
    pc->set_number(c.number);
    pc->set_value(c.value);
  }
  auto ops = [](const std::vector<mvcc::RequestOp>& from,
                google::protobuf::RepeatedPtrField<pb::RequestOp>* to) {
    for (const mvcc::RequestOp& op : from) {
      pb::RequestOp* p = to->Add();
      switch (op.kind) {
        case mvcc::RequestOp::Kind::kRange:
          ToProto(op.range, p->mutable_range());
          break;
        case mvcc::RequestOp::Kind::kPut:
          ToProto(op.put, p->mutable_put());
          break;
        case mvcc::RequestOp::Kind::kDeleteRange:
          ToProto(op.delete_range, p->mutable_delete_range());
          break;
        case mvcc::RequestOp::Kind::kTxn:
          // An absent nested txn is an empty one: it must still decode as a txn.
          p->mutable_txn();
          if (op.txn != nullptr) ToProto(*op.txn, p->mutable_txn());
          break;
      }
    }
  };
  ops(in.success, out->mutable_success());
  ops(in.failure, out->mutable_failure());
}

absl::StatusOr<mvcc::RangeRequest> FromProto(const pb::RangeRequest& in) {
  if (in.sort_order() < 0 || in.sort_order() > static_cast<int>(mvcc::SortOrder::kDescend)) {
    return Malformed(absl::StrCat("sort order ", in.sort_order()));
  }
  if (in.sort_target() < 0 || in.sort_target() > static_cast<int>(mvcc::SortTarget::kValue)) {
    return Malformed(absl::StrCat("sort target ", in.sort_target()));
  }
  mvcc::RangeRequest out;
  out.key = in.key();
  out.range_end = in.range_end();
  out.limit = in.limit();
  out.revision = in.revision();
  out.sort_order = static_cast<mvcc::SortOrder>(in.sort_order());
  out.sort_target = static_cast<mvcc::SortTarget>(in.sort_target());
  out.serializable = in.serializable();
  out.keys_only = in.keys_only();
  out.count_only = in.count_only();
  out.min_mod_revision = in.min_mod_revision();
  out.max_mod_revision = in.max_mod_revision();
  out.min_create_revision = in.min_create_revision();
  out.max_create_revision = in.max_create_revision();
  return out;
}

mvcc::PutRequest FromProto(const pb::PutRequest& in) {
  mvcc::PutRequest out;
  out.key = in.key();
  out.value = in.value();
  out.lease = in.lease();
  out.prev_kv = in.prev_kv();
  out.ignore_value = in.ignore_value();
  out.ignore_lease = in.ignore_lease();
  return out;
}

mvcc::PutRequest FromProto(pb::PutRequest&& in) {
  mvcc::PutRequest out;
  out.key = std::move(*in.mutable_key());
  out.value = std::move(*in.mutable_value());
  out.lease = in.lease();
  out.prev_kv = in.prev_kv();
  out.ignore_value = in.ignore_value();
  out.ignore_lease = in.ignore_lease();
  return out;
}

mvcc::DeleteRangeRequest FromProto(const pb::DeleteRangeRequest& in) {
  mvcc::DeleteRangeRequest out;
  out.key = in.key();
  out.range_end = in.range_end();
  out.prev_kv = in.prev_kv();
  return out;
}

namespace {

// FromProto of a txn; from a mutable `in` (Txn = pb::TxnRequest) the top-level puts' keys and
// values are moved out instead of copied.
template <typename Txn>
absl::StatusOr<mvcc::TxnRequest> TxnFromProto(Txn& in, int depth) {
  constexpr bool kMove = !std::is_const_v<Txn>;
  if (depth > kMaxTxnDepth) {
    return Malformed(absl::StrCat("txn nested deeper than ", kMaxTxnDepth));
  }
  mvcc::TxnRequest out;
  out.compare.reserve(static_cast<size_t>(in.compare_size()));
  for (const pb::Compare& pc : in.compare()) {
    if (pc.result() < 0 || pc.result() > static_cast<int>(mvcc::Compare::Result::kNotEqual)) {
      return Malformed(absl::StrCat("compare result ", pc.result()));
    }
    if (pc.target() < 0 || pc.target() > static_cast<int>(mvcc::Compare::Target::kLease)) {
      return Malformed(absl::StrCat("compare target ", pc.target()));
    }
    mvcc::Compare c;
    c.result = static_cast<mvcc::Compare::Result>(pc.result());
    c.target = static_cast<mvcc::Compare::Target>(pc.target());
    c.key = pc.key();
    c.range_end = pc.range_end();
    c.number = pc.number();
    c.value = pc.value();
    out.compare.push_back(std::move(c));
  }
  auto ops = [&](auto& from, std::vector<mvcc::RequestOp>* to) -> absl::Status {
    to->reserve(static_cast<size_t>(from.size()));
    for (auto& p : from) {
      mvcc::RequestOp op;
      switch (p.request_case()) {
        case pb::RequestOp::kRange: {
          auto range = FromProto(p.range());
          if (!range.ok()) return range.status();
          op.kind = mvcc::RequestOp::Kind::kRange;
          op.range = std::move(*range);
          break;
        }
        case pb::RequestOp::kPut:
          op.kind = mvcc::RequestOp::Kind::kPut;
          if constexpr (kMove) {
            op.put = FromProto(std::move(*p.mutable_put()));
          } else {
            op.put = FromProto(p.put());
          }
          break;
        case pb::RequestOp::kDeleteRange:
          op.kind = mvcc::RequestOp::Kind::kDeleteRange;
          op.delete_range = FromProto(p.delete_range());
          break;
        case pb::RequestOp::kTxn: {
          auto nested = FromProto(p.txn(), depth + 1);
          if (!nested.ok()) return nested.status();
          op.kind = mvcc::RequestOp::Kind::kTxn;
          op.txn = std::make_shared<mvcc::TxnRequest>(std::move(*nested));
          break;
        }
        case pb::RequestOp::REQUEST_NOT_SET:
          return Malformed("txn operation without a request");
      }
      to->push_back(std::move(op));
    }
    return absl::OkStatus();
  };
  if constexpr (kMove) {
    if (auto s = ops(*in.mutable_success(), &out.success); !s.ok()) return s;
    if (auto s = ops(*in.mutable_failure(), &out.failure); !s.ok()) return s;
  } else {
    if (auto s = ops(in.success(), &out.success); !s.ok()) return s;
    if (auto s = ops(in.failure(), &out.failure); !s.ok()) return s;
  }
  return out;
}

}  // namespace

absl::StatusOr<mvcc::TxnRequest> FromProto(const pb::TxnRequest& in, int depth) {
  return TxnFromProto(in, depth);
}

absl::StatusOr<mvcc::TxnRequest> FromProto(pb::TxnRequest&& in, int depth) {
  return TxnFromProto(in, depth);
}

}  // namespace kvstore::server
