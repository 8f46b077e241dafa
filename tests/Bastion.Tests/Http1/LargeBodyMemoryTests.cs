using System.Net;
using System.Security.Cryptography;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Bastion.Tests.Http1;

/// <summary>
/// 1 GiB up and 1 GiB down through each listener of a real `bastion run` process, chunked and with
/// Content-Length: the bodies arrive intact, and the gateway's peak memory does not grow with them.
/// </summary>
public sealed class LargeBodyMemoryTests(ITestOutputHelper output)
{
    const long GiB = 1L << 30;

    /// <summary>The origin's pattern, generated as it is sent (no 1 GiB buffer in the test either).</summary>
    sealed class PatternContent(long length, bool announce) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var buf = new byte[64 * 1024];
            for (long i = 0; i < length;)
            {
                int n = (int)Math.Min(buf.Length, length - i);
                for (int k = 0; k < n; k++) buf[k] = TestOrigin.PatternByte(i + k);
                await stream.WriteAsync(buf.AsMemory(0, n));
                i += n;
            }
        }

        protected override bool TryComputeLength(out long l)
        {
            l = length;
            return announce;
        }
    }

    [Fact]
    public async Task A_gibibyte_each_way_through_each_listener_in_constant_memory()
    {
        await using var origin = await TestOrigin.StartAsync();
        await using var gw = await BastionProcess.StartAsync($$"""
            logging: { access: off }
            listeners:
              - { name: fwd, type: http-proxy, listen: 127.0.0.1:0, policy: open, limits: { max_request_body: 2GiB } }
              - name: rev
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                limits: { max_request_body: 2GiB }
                routes:
                  - { path: "/{**rest}", upstream: "http://127.0.0.1:{{origin.Port}}" }
            policies:
              open:
                rules:
                  - allow: { source: 127.0.0.0/8 }
            """);
        var expected = TestOrigin.PatternSha256(GiB);
        using var direct = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
        using var viaProxy = new HttpClient(new SocketsHttpHandler { Proxy = new WebProxy($"http://127.0.0.1:{gw.Port("fwd")}"), UseProxy = true })
        { Timeout = TimeSpan.FromMinutes(5) };

        // Warm up both paths, then take the baseline.
        Assert.Equal(HttpStatusCode.OK, (await viaProxy.GetAsync($"{origin.Url}/100b")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await direct.GetAsync($"http://127.0.0.1:{gw.Port("rev")}/100b")).StatusCode);
        long baseline = gw.StatusKiB("VmRSS");

        var sw = System.Diagnostics.Stopwatch.StartNew();
        // Forward proxy: up chunked, down with Content-Length.
        var up = await viaProxy.PostAsync($"{origin.Url}/sha256", new PatternContent(GiB, announce: false));
        Assert.Equal($"{expected} {GiB}", await up.Content.ReadAsStringAsync());
        Assert.Equal(expected, await DownloadHash(viaProxy, $"{origin.Url}/bytes/{GiB}"));
        // Reverse proxy: up with Content-Length, down chunked.
        var rev = $"http://127.0.0.1:{gw.Port("rev")}";
        up = await direct.PostAsync($"{rev}/sha256", new PatternContent(GiB, announce: true));
        Assert.Equal($"{expected} {GiB}", await up.Content.ReadAsStringAsync());
        Assert.Equal(expected, await DownloadHash(direct, $"{rev}/chunked/{GiB}"));

        long peak = gw.StatusKiB("VmHWM");
        output.WriteLine($"4 GiB in {sw.Elapsed.TotalSeconds:0.0}s; gateway RSS before {baseline / 1024} MiB, peak {peak / 1024} MiB");
        // Constant memory: the peak is the baseline plus buffers, nowhere near the bodies' size.
        Assert.True(peak - baseline < 48 * 1024, $"peak {peak / 1024} MiB against {baseline / 1024} MiB before the transfers");
    }

    static async Task<string> DownloadHash(HttpClient client, string url)
    {
        using var r = await client.GetAsync(url, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        await using var s = await r.Content.ReadAsStreamAsync();
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buf = new byte[64 * 1024];
        long total = 0;
        int n;
        while ((n = await s.ReadAsync(buf)) > 0)
        {
            h.AppendData(buf, 0, n);
            total += n;
        }
        Assert.Equal(GiB, total);
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }
}
