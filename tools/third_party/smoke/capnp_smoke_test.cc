#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async.h>

#include "gtest/gtest.h"
#include "tools/third_party/smoke/smoke.capnp.h"

namespace {

class AdderImpl final : public Adder::Server {
 protected:
  kj::Promise<void> add(AddContext context) override {
    auto params = context.getParams();
    context.getResults().setSum(params.getA() + params.getB());
    return kj::READY_NOW;
  }
};

TEST(CapnpSmoke, TwoPartyRpcOverInProcessPipe) {
  kj::EventLoop loop;
  kj::WaitScope wait_scope(loop);
  auto pipe = kj::newTwoWayPipe();

  capnp::TwoPartyClient server(*pipe.ends[1], kj::heap<AdderImpl>(),
                               capnp::rpc::twoparty::Side::SERVER);
  capnp::TwoPartyClient client(*pipe.ends[0]);
  Adder::Client adder = client.bootstrap().castAs<Adder>();

  auto request = adder.addRequest();
  request.setA(40);
  request.setB(2);
  auto response = request.send().wait(wait_scope);
  EXPECT_EQ(response.getSum(), 42);
}

}  // namespace
