// ConfigReloader over a temporary config file, polled every few milliseconds.
#include "server/app/config_reloader.h"

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/app/gateway_server.h"
#include "server/common/crypto.h"
#include "server/config/config_loader.h"
#include "server/core/tenant_directory.h"
#include "server/ops/gateway_metrics.h"
#include "tests/server/ops/capture_stderr.h"
#include "tests/server/ops/metric_values.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::ops_testing::CaptureStderr;
using ::copilot::gateway::ops_testing::MetricValues;
using ::copilot::gateway::testing::Eventually;
using ::testing::HasSubstr;

constexpr absl::Duration kPoll = absl::Milliseconds(10);

// A config with tenants `ids` (each with a bearer token of its own).
std::string ConfigWithTenants(std::initializer_list<std::string> ids) {
  std::string yaml =
      "upstream:\n  base_url: \"http://127.0.0.1:1/agents\"\n  api_key_env: UPSTREAM_KEY\n"
      "identity: bearer\ndefault_tenant:\n  id: anonymous\n  licence: LIC-0\ntenants:\n";
  for (const std::string& id : ids) {
    absl::StrAppend(&yaml, "  - id: ", id, "\n    bearer_token_sha256: [\"",
                    absl::BytesToHexString(Sha256("token-" + id)), "\"]\n    licence: LIC-", id,
                    "\n    assistants: [{id: \"*\"}]\n");
  }
  return yaml;
}

EnvLookup FakeEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (name == "UPSTREAM_KEY") return "upstream-key";
    return std::nullopt;
  };
}

class ConfigReloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/config_reloader_test_XXXXXX";
    const int fd = mkstemp(name);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = name;
    Write(ConfigWithTenants({"a"}));
    absl::StatusOr<GatewayConfig> config = BuildConfigFromText(path_, bytes_, {});
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<GatewaySecrets> secrets = ResolveSecrets(*config, FakeEnv());
    ASSERT_TRUE(secrets.ok()) << secrets.status();
    resolver_ = std::make_unique<TenantResolver>(BuildTenantDirectory(*config, *secrets));
    initial_ = resolver_->Current();
    ASSERT_NE(initial_->FindById("a"), nullptr);
  }
  void TearDown() override {
    reloader_.reset();
    std::remove(path_.c_str());
  }

  // Replaces the file atomically, as a ConfigMap update does.
  void Write(const std::string& text) {
    bytes_ = text;
    const std::string temp = path_ + ".new";
    std::ofstream(temp) << text;
    ASSERT_EQ(std::rename(temp.c_str(), path_.c_str()), 0);
  }
  void StartReloader(absl::Duration interval = kPoll, EnvLookup env = FakeEnv()) {
    reloader_ = std::make_unique<ConfigReloader>(path_, ConfigOverrides{}, std::move(env),
                                                 *resolver_, bytes_, interval, &metrics_);
  }
  double Reloads(const std::string& result) const {
    return MetricValues(*metrics_.registry())
        .Counter("copilot_gateway_config_reloads_total", {{"result", result}})
        .value_or(-1);
  }
  double LastReloadSuccessful() const {
    return MetricValues(*metrics_.registry())
        .Gauge("copilot_gateway_config_last_reload_successful")
        .value_or(-1);
  }
  double ConfigInfo(const std::string& text) const {
    return MetricValues(*metrics_.registry())
        .Gauge("copilot_gateway_config_info", {{"sha256", ConfigHash(text)}})
        .value_or(-1);
  }
  // Lets the watcher poll a few more times.
  static void SomePolls() { absl::SleepFor(10 * kPoll); }

  std::string path_;
  std::string bytes_;  // What the file holds.
  GatewayMetrics metrics_{"test"};
  std::unique_ptr<TenantResolver> resolver_;
  std::shared_ptr<const TenantDirectory> initial_;
  std::unique_ptr<ConfigReloader> reloader_;
};

TEST_F(ConfigReloaderTest, AChangedFileSwapsTheTenants) {
  const std::string original = bytes_;
  StartReloader();
  EXPECT_EQ(ConfigInfo(original), 1);
  const std::string changed = ConfigWithTenants({"a", "b"});
  Write(changed);
  ASSERT_TRUE(Eventually([&] { return reloader_->reloads_ok() == 1; }));
  std::shared_ptr<const TenantDirectory> current = resolver_->Current();
  EXPECT_NE(current, initial_);
  EXPECT_EQ(current->size(), 2u);
  EXPECT_NE(current->FindById("b"), nullptr);
  EXPECT_EQ(initial_->FindById("b"), nullptr);  // Calls holding the old directory keep it.
  EXPECT_EQ(reloader_->reloads_failed(), 0);
  EXPECT_EQ(Reloads("ok"), 1);
  EXPECT_EQ(LastReloadSuccessful(), 1);
  EXPECT_EQ(ConfigInfo(changed), 1);

  // A tenant removed goes too.
  Write(ConfigWithTenants({"b"}));
  ASSERT_TRUE(Eventually([&] { return reloader_->reloads_ok() == 2; }));
  EXPECT_EQ(resolver_->Current()->FindById("a"), nullptr);
  EXPECT_NE(resolver_->Current()->FindById("b"), nullptr);
}

TEST_F(ConfigReloaderTest, AnInvalidFileKeepsTheTenantsAndIsCountedAndLoggedOnce) {
  StartReloader();
  const std::string log = CaptureStderr([&] {
    Write(ConfigWithTenants({"a", "b"}) + "no_such_setting: 1\n");
    ASSERT_TRUE(Eventually([&] { return reloader_->reloads_failed() == 1; }));
    SomePolls();  // The same bad bytes are not reported again.
  });
  EXPECT_EQ(reloader_->reloads_failed(), 1);
  EXPECT_EQ(reloader_->reloads_ok(), 0);
  EXPECT_EQ(resolver_->Current(), initial_);
  EXPECT_EQ(Reloads("failed"), 1);
  EXPECT_EQ(LastReloadSuccessful(), 0);
  EXPECT_THAT(log, HasSubstr("config reload failed"));
  EXPECT_THAT(log, HasSubstr("no_such_setting"));
  EXPECT_THAT(log, HasSubstr("the tenants in force stay"));

  // A file that parses but names a secret that cannot be read is refused too.
  Write(absl::StrReplaceAll(ConfigWithTenants({"a", "b"}),
                            {{"api_key_env: UPSTREAM_KEY", "api_key_env: MISSING"}}));
  ASSERT_TRUE(Eventually([&] { return reloader_->reloads_failed() == 2; }));
  EXPECT_EQ(resolver_->Current(), initial_);

  // Once fixed, the next poll applies it.
  Write(ConfigWithTenants({"a", "b"}));
  ASSERT_TRUE(Eventually([&] { return reloader_->reloads_ok() == 1; }));
  EXPECT_NE(resolver_->Current()->FindById("b"), nullptr);
  EXPECT_EQ(LastReloadSuccessful(), 1);
}

// In Kubernetes a ConfigMap update often lands before the Secret file it names: the refused file
// is tried again at every poll and applied once the secret is there, without another edit or
// SIGHUP (before, it stayed refused until the file changed again). Reported once, as a warning.
TEST_F(ConfigReloaderTest, ARefusedFileIsTriedAgainUntilTheSecretItNamesArrives) {
  auto arrived = std::make_shared<std::atomic<bool>>(false);
  StartReloader(kPoll, [arrived](const std::string& name) -> std::optional<std::string> {
    if (name == "UPSTREAM_KEY") return "upstream-key";
    if (name == "LATE_KEY" && arrived->load()) return "late-key";
    return std::nullopt;
  });
  const std::string log = CaptureStderr([&] {
    Write(absl::StrReplaceAll(ConfigWithTenants({"a", "b"}),
                              {{"api_key_env: UPSTREAM_KEY", "api_key_env: LATE_KEY"}}));
    ASSERT_TRUE(Eventually([&] { return reloader_->reloads_failed() == 1; }));
    SomePolls();
  });
  EXPECT_EQ(reloader_->reloads_failed(), 1);
  EXPECT_EQ(Reloads("failed"), 1);
  EXPECT_EQ(resolver_->Current(), initial_);
  std::size_t reported = 0;
  for (std::size_t at = log.find("config reload failed"); at != std::string::npos;
       at = log.find("config reload failed", at + 1)) {
    ++reported;
  }
  EXPECT_EQ(reported, 1u) << log;
  EXPECT_THAT(log, HasSubstr(R"("level":"warning")"));

  arrived->store(true);  // The file unchanged.
  ASSERT_TRUE(Eventually([&] { return reloader_->reloads_ok() == 1; }));
  EXPECT_NE(resolver_->Current()->FindById("b"), nullptr);
  EXPECT_EQ(LastReloadSuccessful(), 1);
  EXPECT_EQ(reloader_->reloads_failed(), 1);
}

TEST_F(ConfigReloaderTest, NothingChangesWhileTheBytesAreUnchanged) {
  StartReloader();
  Write(bytes_);  // A new file with the same bytes.
  SomePolls();
  EXPECT_EQ(reloader_->reloads_ok(), 0);
  EXPECT_EQ(reloader_->reloads_failed(), 0);
  EXPECT_EQ(resolver_->Current(), initial_);
  EXPECT_EQ(Reloads("ok"), 0);
  EXPECT_EQ(Reloads("failed"), 0);
}

TEST_F(ConfigReloaderTest, AMissingFileIsNotCountedByThePoll) {
  StartReloader();
  ASSERT_EQ(std::remove(path_.c_str()), 0);  // A ConfigMap swap in progress.
  SomePolls();
  EXPECT_EQ(reloader_->reloads_failed(), 0);
  EXPECT_EQ(resolver_->Current(), initial_);
}

TEST_F(ConfigReloaderTest, RequestReloadReloadsNowEvenWithTheSameBytes) {
  StartReloader(/*interval=*/absl::Hours(1));
  reloader_->RequestReload();
  ASSERT_TRUE(Eventually([&] { return reloader_->reloads_ok() == 1; }));
  std::shared_ptr<const TenantDirectory> reloaded = resolver_->Current();
  EXPECT_NE(reloaded, initial_);  // A new directory with the same tenant.
  EXPECT_NE(reloaded->FindById("a"), nullptr);

  // A changed file is read on request too, without waiting for the (hour-long) interval.
  Write(ConfigWithTenants({"a", "c"}));
  reloader_->RequestReload();
  ASSERT_TRUE(Eventually([&] { return reloader_->reloads_ok() == 2; }));
  EXPECT_NE(resolver_->Current()->FindById("c"), nullptr);
}

TEST_F(ConfigReloaderTest, ARequestedReloadOfAMissingFileIsCounted) {
  StartReloader(/*interval=*/absl::Hours(1));
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  const std::string log = CaptureStderr([&] {
    reloader_->RequestReload();
    ASSERT_TRUE(Eventually([&] { return reloader_->reloads_failed() == 1; }));
  });
  EXPECT_EQ(resolver_->Current(), initial_);
  EXPECT_EQ(Reloads("failed"), 1);
  EXPECT_THAT(log, HasSubstr("config reload failed"));
}

TEST(ConfigHashTest, IsTheHexSha256OfTheBytes) {
  EXPECT_EQ(ConfigHash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_NE(ConfigHash("a"), ConfigHash("b"));
}

}  // namespace
}  // namespace copilot::gateway
