using System.Runtime.CompilerServices;
using Bastion.Configuration;
using Bastion.Observability;

namespace Bastion.Tests.Observability;

/// <summary>
/// The metrics' identity-indexed slot tables: two listener names that share a slot evict each other on every call,
/// and such a miss must cost a dictionary probe, not an allocation per request.
/// </summary>
public sealed class GatewayMetricsAllocationTests
{
    /// <summary>Two distinct name instances whose identity hashes agree in the low bits of every table size (32 covers 8).</summary>
    static (string, string) CollidingNames()
    {
        var seen = new Dictionary<int, string>();
        for (int n = 0; ; n++)
        {
            var s = "listener-" + n.ToString(System.Globalization.CultureInfo.InvariantCulture);
            int k = RuntimeHelpers.GetHashCode(s) & 31;
            if (seen.TryGetValue(k, out var other)) return (other, s);
            seen[k] = s;
        }
    }

    [Fact]
    public void Colliding_listener_names_do_not_allocate_per_call()
    {
        var m = new GatewayMetrics();
        var (a, b) = CollidingNames();
        const string rule = "web#1", type = "http-proxy";
        void Round()
        {
            foreach (var l in (ReadOnlySpan<string>)[a, b])
            {
                m.ConnectionOpened(l);
                m.Bytes(l, 10, 20);
                m.Decision(l, type, Verdict.Allow, rule);
                m.Response(l, 200);
                m.ConnectionClosed(l);
            }
        }
        Round(); // the first call per name makes its children and slot
        const int n = 10_000;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < n; i++) Round();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // Before the fix every one of the 8 evicting lookups per round made a slot (~40 B): megabytes here.
        Assert.True(allocated < 1024, $"{allocated} bytes allocated over {n} rounds of two colliding listeners");

        // And the counts are still right, per listener.
        var ca = m.Counters(a);
        var cb = m.Counters(b);
        Assert.Equal(n + 1, ca.Accepted);
        Assert.Equal(n + 1, cb.Accepted);
        Assert.Equal(n + 1, ca.Allowed);
        Assert.Equal(20L * (n + 1), cb.BytesOut);
        Assert.Equal(n + 1, m.Responses(b)[1]);
    }
}
