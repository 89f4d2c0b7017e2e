// GatewayMetrics in a binary that links gateway_ops and nothing else of copilot.v1: no code here
// touches the generated copilot.v1 classes, so the only reason copilot_service.pb.cc is linked
// in (and its descriptor registered) is gateway_ops itself. Keep it that way: a separate
// executable, because one reference anywhere in a binary would hide the failure this catches.
#include <string>

#include "gtest/gtest.h"
#include "server/ops/gateway_metrics.h"

namespace copilot::gateway {
namespace {

TEST(GatewayMetricsLinkTest, CreatesTheMethodSeriesWithoutOtherUsersOfTheProtos) {
  GatewayMetrics metrics("test");
  for (const char* name :
       {"ListAssistants", "CreateThread", "GetThread", "DeleteThread", "AddMessage", "ListMessages",
        "Run", "StreamRun", "Complete", "StreamComplete"}) {
    EXPECT_NE(metrics.FindMethod(name), nullptr) << name;
  }
}

}  // namespace
}  // namespace copilot::gateway
