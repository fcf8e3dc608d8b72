#include <lmdb.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace {

TEST(LmdbSmoke, PutGetInTempDir) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  ASSERT_NE(tmp, nullptr);

  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_mapsize(env, size_t{16} << 20), 0);
  ASSERT_EQ(mdb_env_open(env, tmp, 0, 0644), 0) << "mdb_env_open in " << tmp;

  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  ASSERT_EQ(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
  std::string key = "foo", value = "bar";
  MDB_val k{key.size(), key.data()}, v{value.size(), value.data()};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);

  ASSERT_EQ(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn), 0);
  MDB_val got;
  ASSERT_EQ(mdb_get(txn, dbi, &k, &got), 0);
  EXPECT_EQ(std::string(static_cast<const char*>(got.mv_data), got.mv_size), "bar");
  MDB_val missing_key{3, const_cast<char*>("zzz")};
  EXPECT_EQ(mdb_get(txn, dbi, &missing_key, &got), MDB_NOTFOUND);
  mdb_txn_abort(txn);
  mdb_env_close(env);
}

}  // namespace
