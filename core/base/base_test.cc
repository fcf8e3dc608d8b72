#include <string>

#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"

namespace kvstore {
namespace {

TEST(Errors, CodeTravelsWithTheStatus) {
  absl::Status status = Error(ErrorCode::kCompacted, "revision 3 < compacted revision 5");
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CodeOf(status), ErrorCode::kCompacted);
  EXPECT_EQ(status.message(), "COMPACTED: revision 3 < compacted revision 5");
  absl::Status copy = status;
  EXPECT_EQ(CodeOf(copy), ErrorCode::kCompacted);
  EXPECT_EQ(CodeOf(absl::OkStatus()), ErrorCode::kOk);
  EXPECT_EQ(CodeOf(absl::InternalError("x")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(Error(ErrorCode::kNoSpace, "quota")), ErrorCode::kNoSpace);
}

TEST(Errors, WireNamesRoundTrip) {
  for (int i = 1; i <= static_cast<int>(ErrorCode::kStopped); ++i) {
    const auto code = static_cast<ErrorCode>(i);
    EXPECT_EQ(ErrorCodeFromName(ErrorCodeName(code)), code) << ErrorCodeName(code);
  }
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNoSpace), "NOSPACE");
  EXPECT_EQ(ErrorCodeFromName("NO_SUCH_CODE"), ErrorCode::kInvalidArgument);
}

TEST(Encoding, VarintsRoundTripAndRejectTruncation) {
  std::string out;
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 300ull, ~0ull}) PutVarint(&out, v);
  absl::string_view in = out;
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 300ull, ~0ull}) {
    uint64_t got = 0;
    ASSERT_TRUE(GetVarint(&in, &got));
    EXPECT_EQ(got, v);
  }
  EXPECT_TRUE(in.empty());
  absl::string_view truncated("\x80\x80", 2);
  uint64_t got = 0;
  EXPECT_FALSE(GetVarint(&truncated, &got));
}

TEST(Encoding, BigEndianSortsNumerically) {
  std::string a, b;
  PutFixed64BigEndian(&a, 255);
  PutFixed64BigEndian(&b, 256);
  EXPECT_LT(a, b);
  absl::string_view in = b;
  uint64_t got = 0;
  ASSERT_TRUE(GetFixed64BigEndian(&in, &got));
  EXPECT_EQ(got, 256u);
}

TEST(Encoding, LengthPrefixed) {
  std::string out;
  PutLengthPrefixed(&out, "hello");
  PutLengthPrefixed(&out, "");
  absl::string_view in = out, got;
  ASSERT_TRUE(GetLengthPrefixed(&in, &got));
  EXPECT_EQ(got, "hello");
  ASSERT_TRUE(GetLengthPrefixed(&in, &got));
  EXPECT_EQ(got, "");
  absl::string_view bad("\x05hi", 3);
  EXPECT_FALSE(GetLengthPrefixed(&bad, &got));
}

TEST(Encoding, Fnv1aIsStable) {
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
}

TEST(JsonQuote, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
  EXPECT_EQ(JsonQuote(std::string("\x01\x1f", 2)), "\"\\u0001\\u001f\"");
  EXPECT_EQ(JsonQuote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");  // UTF-8 passes through
}

}  // namespace
}  // namespace kvstore
