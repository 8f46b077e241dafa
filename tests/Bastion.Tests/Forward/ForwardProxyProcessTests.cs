using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Forward;

/// <summary>What only a separate gateway process shows: memory under a large transfer.</summary>
public sealed class ForwardProxyProcessTests(OriginFixture f, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<OriginFixture>
{
    [Fact]
    public async Task A_GiB_through_the_proxy_does_not_grow_the_process()
    {
        await using var gw = await BastionProcess.StartAsync("""
            logging:
              access: off
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: out, limits: { max_request_body: 2GiB } }
            policies:
              out:
                rules:
                  - allow: { source: 127.0.0.1 }
            """);
        var proxy = $"http://127.0.0.1:{gw.Port("web")}";
        // Warm up: JIT, pools, first connections.
        var warm = await Proc.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", proxy, $"{f.Origin.Url}/bytes/{8 << 20}");
        Assert.True(warm.Stdout == "200", warm.ToString() + gw.Proc.Output);
        var before = gw.StatusKiB("VmRSS");

        const long size = 1L << 30;
        var down = await Proc.CurlAsync("-o", "/dev/null", "-w", "%{size_download}", "-x", proxy, $"{f.Origin.Url}/bytes/{size}");
        Assert.Equal(size.ToString(), down.Stdout);
        var up = await Proc.RunAsync("bash", ["-c", $"head -c {256L << 20} /dev/zero | curl -q -sS -x {proxy} -X POST -T - {f.Origin.Url}/sha256"], TimeSpan.FromSeconds(120));
        Assert.EndsWith($" {256L << 20}", up.Stdout);

        var peak = gw.StatusKiB("VmHWM");
        var growthMiB = (peak - before) / 1024.0;
        output.WriteLine($"RSS before {before / 1024} MiB, peak {peak / 1024} MiB, growth {growthMiB:0.0} MiB");
        Assert.True(growthMiB < 24, $"peak RSS grew by {growthMiB:0.0} MiB (from {before / 1024} MiB)");
    }
}
