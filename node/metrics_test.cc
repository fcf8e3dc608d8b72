// The registry's text exposition, line by line: what Prometheus' parser (and promtool, in
// http_service_test) reads.

#include "node/metrics.h"

#include <thread>

#include "gtest/gtest.h"

namespace kvstore::node {
namespace {

TEST(MetricsTest, RendersFamiliesSortedWithHelpAndType) {
  Metrics metrics;
  metrics.GetGauge("b_gauge", "A gauge.").Set(2.5);
  metrics.GetCounter("a_total", "A counter.").Inc(12345678);
  EXPECT_EQ(metrics.Render(),
            "# HELP a_total A counter.\n"
            "# TYPE a_total counter\n"
            "a_total 12345678\n"
            "# HELP b_gauge A gauge.\n"
            "# TYPE b_gauge gauge\n"
            "b_gauge 2.5\n");
}

TEST(MetricsTest, EscapesHelpAndLabelValues) {
  Metrics metrics;
  metrics.GetCounter("c_total", "back\\slash\nnew \"line\"", {{"path", "a\"b\\c\nd"}}).Inc();
  EXPECT_EQ(metrics.Render(),
            "# HELP c_total back\\\\slash\\nnew \"line\"\n"
            "# TYPE c_total counter\n"
            "c_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsTest, ChildrenOfAFamilySortByLabelValues) {
  Metrics metrics;
  metrics.GetCounter("r_total", "R.", {{"code", "b"}}).Inc(2);
  metrics.GetCounter("r_total", "R.", {{"code", "a"}}).Inc(1);
  EXPECT_EQ(metrics.Render(),
            "# HELP r_total R.\n# TYPE r_total counter\nr_total{code=\"a\"} 1\n"
            "r_total{code=\"b\"} 2\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Metrics metrics;
  Histogram& h =
      metrics.GetHistogram("d_seconds", "D.", ExponentialBuckets(0.001, 2, 3), {{"To", "abc"}});
  h.Observe(0.0005);
  h.Observe(0.003);
  h.Observe(10);
  EXPECT_EQ(metrics.Render(),
            "# HELP d_seconds D.\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{To=\"abc\",le=\"0.001\"} 1\n"
            "d_seconds_bucket{To=\"abc\",le=\"0.002\"} 1\n"
            "d_seconds_bucket{To=\"abc\",le=\"0.004\"} 2\n"
            "d_seconds_bucket{To=\"abc\",le=\"+Inf\"} 3\n"
            "d_seconds_sum{To=\"abc\"} 10.0035\n"
            "d_seconds_count{To=\"abc\"} 3\n");
}

TEST(MetricsTest, EtcdBucketLayoutsPrintAsEtcdPrintsThem) {
  const std::vector<double> peer = ExponentialBuckets(0.0001, 2, 16);
  ASSERT_EQ(peer.size(), 16u);
  EXPECT_DOUBLE_EQ(peer.back(), 3.2768);
  Metrics metrics;
  metrics.GetHistogram("p_seconds", "P.", peer);
  EXPECT_NE(metrics.Render().find("p_seconds_bucket{le=\"3.2768\"} 0\n"), std::string::npos);
}

TEST(MetricsTest, CollectorsRunBeforeEveryRender) {
  Metrics metrics;
  Gauge& g = metrics.GetGauge("g", "G.");
  int calls = 0;
  metrics.AddCollector([&] { g.Set(++calls); });
  EXPECT_NE(metrics.Render().find("g 1\n"), std::string::npos);
  EXPECT_NE(metrics.Render().find("g 2\n"), std::string::npos);
}

TEST(MetricsTest, AHistogramTakesObservationsFromAnotherThread) {
  Metrics metrics;
  Histogram& h = metrics.GetHistogram("t_seconds", "T.", ExponentialBuckets(0.001, 2, 14));
  std::thread observer([&h] {
    for (int i = 0; i < 10000; ++i) h.Observe(0.002);
  });
  for (int i = 0; i < 100; ++i) (void)metrics.Render();
  observer.join();
  EXPECT_EQ(h.count(), 10000u);
  EXPECT_EQ(h.cumulative_count(1), 10000u);
}

TEST(MetricsTest, ProcessMetricsAreReal) {
  Metrics metrics;
  AddProcessMetrics(metrics);
  const std::string text = metrics.Render();
  EXPECT_NE(text.find("process_resident_memory_bytes "), std::string::npos);
  EXPECT_EQ(text.find("process_resident_memory_bytes 0\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("process_start_time_seconds 0\n"), std::string::npos) << text;
}

TEST(MetricsDeathTest, ANameIsOneTypeForGood) {
  Metrics metrics;
  metrics.GetCounter("x_total", "X.");
  EXPECT_DEATH(metrics.GetGauge("x_total", "X."), "another type");
}

}  // namespace
}  // namespace kvstore::node
