using System.Security.Cryptography;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tls;

/// <summary>Inspection under volume: a GiB each way intact, HTTP/2 bodies intact, a hundred tunnels at once.</summary>
public sealed class InspectionVolumeTests(InspectionFixture f) : IClassFixture<InspectionFixture>
{
    const long GiB = 1L << 30;

    static string ZerosSha256(long n)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var zeros = new byte[1 << 20];
        for (long i = 0; i < n; i += zeros.Length) h.AppendData(zeros, 0, (int)Math.Min(zeros.Length, n - i));
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    [Fact]
    public async Task A_GiB_each_way_through_an_inspected_tunnel_is_intact()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml(listener: "    limits: { max_request_body: 2GiB }"));
        var proxy = $"-x {gw.Url("web")} --cacert {f.CaCert}";
        var origin = $"https://shop.localhost:{f.Origin.Port}";
        // Piped through, never stored.
        var expectedDown = Task.Run(() => TestOrigin.PatternSha256(GiB));
        var down = await Proc.RunAsync("bash", ["-c", $"curl -q -sS --http1.1 {proxy} {origin}/bytes/{GiB} | sha256sum"], TimeSpan.FromMinutes(4));
        Assert.StartsWith(await expectedDown, down.Stdout);

        var expectedUp = Task.Run(() => ZerosSha256(GiB));
        var up = await Proc.RunAsync("bash", ["-c", $"head -c {GiB} /dev/zero | curl -q -sS --http1.1 {proxy} -X POST -T - {origin}/sha256"], TimeSpan.FromMinutes(4));
        Assert.Equal($"{await expectedUp} {GiB}", up.Stdout);

        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"POST {origin}/sha256");
        Assert.Equal(200, line.Num("status"));
        Assert.True(line.Num("bytes_in") >= GiB, $"bytes_in {line.Num("bytes_in")}");
    }

    [Fact]
    public async Task Http2_bodies_are_intact_both_ways()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        const long size = 48L << 20;
        var proxy = $"-x {gw.Url("web")} --cacert {f.CaCert}";
        var origin = $"https://shop.localhost:{f.Origin.Port}";
        var down = await Proc.RunAsync("bash", ["-c", $"curl -q -sS --http2 {proxy} {origin}/chunked/{size} | sha256sum"], TimeSpan.FromMinutes(2));
        Assert.StartsWith(TestOrigin.PatternSha256(size), down.Stdout);
        var up = await Proc.RunAsync("bash", ["-c", $"head -c {size} /dev/zero | curl -q -sS --http2 {proxy} -X POST -T - {origin}/sha256"], TimeSpan.FromMinutes(2));
        Assert.Equal($"{ZerosSha256(size)} {size}", up.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"POST {origin}/sha256");
        Assert.Equal(200, line.Num("status"));
        Assert.Equal(size, line.Num("bytes_in"));
    }

    [Fact]
    public async Task A_hundred_tunnels_at_once_with_a_hundred_names_each_get_their_own_certificate()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var urls = Enumerable.Range(0, 100).Select(i => $"https://n{i}.shop.localhost:{f.Origin.Port}/echo").ToArray();
        var args = urls.SelectMany(u => new[] { "-o", "/dev/null", u });
        var r = await Proc.CurlAsync(["-x", gw.Url("web"), "--cacert", f.CaCert, "--parallel", "--parallel-immediate", "--parallel-max", "100",
            "-w", "%{http_code} %{ssl_verify_result}\n", .. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var codes = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(100, codes.Length);
        Assert.All(codes, c => Assert.Equal("200 0", c));
        for (int i = 0; i < 100; i++)
        {
            var host = $"n{i}.shop.localhost";
            await gw.WaitForLogAsync(l => l.Str("sni") == host && l.Str("tls") == "inspected" && l.Str("request")!.StartsWith("GET "));
        }
        var cache = Assert.IsType<Bastion.Protocols.HttpProxy.HttpProxyListener>(gw.Host.Listener("web")).Inspection.Tls.Current!;
        Assert.Equal(100, cache.Minted);
        Assert.Equal(100, gw.Host.Metrics.TlsTunnels("web")["inspected"]);
    }
}
