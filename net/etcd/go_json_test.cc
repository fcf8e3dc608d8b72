#include "net/etcd/go_json.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "net/etcd/rpc.pb.h"

namespace kvstore::net::etcd {
namespace {

// `body` refused by GoDecodeRequest as a RangeRequest; Go's text.
std::string RefusalOf(const std::string& body) {
  etcdserverpb::RangeRequest request;
  std::string error;
  EXPECT_EQ(GoDecodeRequest(body, &request, &error), GoJsonResult::kRefused) << body;
  return error;
}

// The answers below are etcd 3.4.23's (Go 1.19) for the same bodies on /v3/kv/range.
TEST(GoDecodeRequest, RefusesWithGoTexts) {
  EXPECT_EQ(RefusalOf("{\"key\":\"Zm9vYg\"}"), "illegal base64 data at input byte 4");
  EXPECT_EQ(RefusalOf("{\"key\":\"Zm9vYg=\"}"), "illegal base64 data at input byte 7");
  EXPECT_EQ(RefusalOf("{\"key\":\"Zm9=v\"}"), "illegal base64 data at input byte 4");
  EXPECT_EQ(RefusalOf("{\"limit\":\"1e\"}"),
            "invalid character ' ' in exponent of numeric literal");
  EXPECT_EQ(RefusalOf("{\"sort_order\":\"a\\\"b\"}"),
            "unknown value \"a\\\\\\\"b\" for enum etcdserverpb.RangeRequest_SortOrder");
  EXPECT_EQ(RefusalOf("{\"key\":[102,null,[1]]}"),
            "json: cannot unmarshal array into Go value of type uint8");
  EXPECT_EQ(RefusalOf("{\"limit\":-9223372036854775809}"),
            "json: cannot unmarshal number -9223372036854775809 into Go value of type int64");
}

TEST(GoDecodeRequest, ReadsAsGoDoes) {
  etcdserverpb::RangeRequest request;
  std::string error;
  ASSERT_EQ(GoDecodeRequest("{\"range_end\":[1,null,255],"
                            "\"limit\":\"-9223372036854775808\",\"sort_order\":99}  trailing",
                            &request, &error),
            GoJsonResult::kOk)
      << error;
  // Bytes as an array of byte values (null is 0).
  EXPECT_EQ(request.range_end(), std::string("\x01\x00\xff", 3));
  EXPECT_EQ(request.limit(), INT64_MIN);
  EXPECT_EQ(request.sort_order(), 99);
  // A lone surrogate is U+FFFD, then not base64.
  EXPECT_EQ(RefusalOf("{\"key\":\"\\ud800x\"}"), "illegal base64 data at input byte 0");

  etcdserverpb::AuthUserGetRequest user;
  ASSERT_EQ(GoDecodeRequest("{\"name\":\"\\ud800x\\ud83d\\ude00\xff\"}", &user, &error),
            GoJsonResult::kOk);
  EXPECT_EQ(user.name(), "\xef\xbf\xbdx\xf0\x9f\x98\x80\xef\xbf\xbd");

  etcdserverpb::TxnRequest txn;
  EXPECT_EQ(GoDecodeRequest("{\"success\":[null]}", &txn, &error), GoJsonResult::kPanics);
}

// Whatever the bytes, the reader answers (no crash, no read past the body): every body made by
// cutting, repeating and flipping bytes of valid ones.
TEST(GoDecodeRequest, AnyBytes) {
  const std::vector<std::string> seeds = {
      "{\"compare\":[{\"target\":\"VALUE\",\"key\":\"Zm9v\",\"value\":\"YQ==\"}],"
      "\"success\":[{\"request_put\":{\"key\":\"Zm9v\",\"value\":[1,2]}},"
      "{\"requestTxn\":{\"failure\":[{\"request_range\":{\"limit\":\"5\"}}]}}],"
      "\"failure\":[{\"request_delete_range\":{\"key\":\"\\u0041\",\"prev_kv\":true}}]}",
      "{\"key\":\"Zm9v\",\"sort_order\":\"DESCEND\",\"limit\":1e2,\"x\":[{\"y\":null}]}",
  };
  uint64_t state = 12345;
  auto next = [&state]() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(state >> 33);
  };
  const std::string alphabet = "{}[]\",:\\u0123456789-+.eEtrufalsn \n\xff\xc3";
  int ok = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string body = seeds[next() % seeds.size()];
    const int edits = 1 + next() % 4;
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = next() % body.size();
      switch (next() % 4) {
        case 0:
          body[at] = alphabet[next() % alphabet.size()];
          break;
        case 1:
          body.erase(at, 1 + next() % 8);
          break;
        case 2:
          body.insert(at, body.substr(next() % body.size(), next() % 16));
          break;
        case 3:
          body.resize(at);
          break;
      }
    }
    etcdserverpb::TxnRequest request;
    std::string error;
    switch (GoDecodeRequest(body, &request, &error)) {
      case GoJsonResult::kRefused:
        EXPECT_FALSE(error.empty()) << body;
        ++refused;
        break;
      default:
        ++ok;
        break;
    }
  }
  EXPECT_GT(ok, 100);
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace kvstore::net::etcd
