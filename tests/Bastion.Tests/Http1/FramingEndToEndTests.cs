using System.Text;
using Bastion.Protocols.Http.Codec;
using Bastion.Tests.Codec;
using Bastion.Tests.Corpora;
using Bastion.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Xunit.Abstractions;

namespace Bastion.Tests.Http1;

/// <summary>
/// Issue 14's exhaustive framing cases against both listeners: every byte 0x00–0xFF inserted before, inside and
/// after a `Transfer-Encoding: chunked` and a `Content-Length: 5` line's name and value, each request on its own
/// connection. What the reference model refuses must be refused with its status and never reach the origin; what it
/// accepts must reach the origin once, with exactly the body its framing says.
/// </summary>
public sealed class FramingEndToEndTests(ITestOutputHelper output)
{
    /// <summary>An origin that records, per case key (/k/{key}), the body lengths it received whole.</summary>
    sealed class BodySink : IAsyncDisposable
    {
        public TestOrigin Origin { get; private set; } = null!;
        readonly Dictionary<string, List<long>> _bodies = [];

        public static async Task<BodySink> StartAsync()
        {
            var sink = new BodySink();
            sink.Origin = await TestOrigin.StartAsync(extra: app => app.Use(async (HttpContext ctx, RequestDelegate _) =>
            {
                long n = 0;
                var buf = new byte[4096];
                int got;
                while ((got = await ctx.Request.Body.ReadAsync(buf)) > 0) n += got;
                var path = ctx.Request.Path.Value ?? "";
                if (path.StartsWith("/k/", StringComparison.Ordinal))
                    lock (sink._bodies)
                    {
                        if (!sink._bodies.TryGetValue(path[3..], out var list)) sink._bodies[path[3..]] = list = [];
                        list.Add(n);
                    }
                await ctx.Response.WriteAsync("ok\n");
            }));
            return sink;
        }

        public List<long> For(string key)
        {
            lock (_bodies) return _bodies.TryGetValue(key, out var l) ? [.. l] : [];
        }

        public ValueTask DisposeAsync() => Origin.DisposeAsync();
    }

    // The same two listeners as the misbehaving-origin tests: a forward and a reverse proxy in front of one origin.
    static string Yaml(int origin) => MisbehavingOriginTests.Yaml(origin);

    [Theory]
    [InlineData("fwd")]
    [InlineData("rev")]
    public async Task Every_byte_in_every_position_of_te_and_cl_through_the_listener(string listener)
    {
        await using var sink = await BodySink.StartAsync();
        await using var gw = await TestGateway.StartAsync(Yaml(sink.Origin.Port));
        int port = gw.Port(listener);
        string target(int i) => listener == "fwd" ? $"http://127.0.0.1:{sink.Origin.Port}/k/{i}" : $"/k/{i}";
        var cases = FramingMutations.Insertions(i => $"POST {target(i)} HTTP/1.1", "a.example").ToList();
        Assert.True(cases.Count > 10_000, $"{cases.Count} cases");

        var sw = System.Diagnostics.Stopwatch.StartNew();
        var answers = await Bounded.MapAsync(cases.Select((c, i) => (c, i)).ToList(), 24,
            item => Corpora.RawClient.ExchangeAsync(port, item.c.Wire, TimeSpan.FromSeconds(10)));
        output.WriteLine($"{listener}: {cases.Count} cases in {sw.Elapsed.TotalSeconds:0.0}s");

        var problems = new List<string>();
        int refused = 0, chunked = 0, length = 0, renamed = 0;
        for (int i = 0; i < cases.Count; i++)
        {
            var c = cases[i];
            var model = ReferenceModel.Request(c.Wire);
            var got = sink.For(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var statuses = Corpora.RawClient.Statuses(answers[i].Response);
            if (answers[i].TimedOut) { problems.Add($"{c.Label}: no answer and no close"); continue; }
            if (model.Status != 0)
            {
                refused++;
                if (got.Count > 0) problems.Add($"{c.Label}: the model refuses ({model.Status}) but the origin got {got.Count} request(s)");
                if (statuses.Count == 0 || statuses[0] != model.Status) problems.Add($"{c.Label}: answered [{string.Join(",", statuses)}], the model says {model.Status}");
                continue;
            }
            // Accepted: once, with the body the framing gives (a Content-Length the 5 bytes cannot satisfy never completes).
            long? expected = model.Kind switch
            {
                BodyKind.Chunked => 5,
                BodyKind.Length => model.Length == 5 ? 5 : null,
                _ => 0,
            };
            if (model.Kind == BodyKind.Chunked) chunked++;
            else if (model.Kind == BodyKind.Length) length++;
            else renamed++;
            if (expected is null)
            {
                if (got.Count > 0) problems.Add($"{c.Label}: Content-Length {model.Length} cannot be complete, yet the origin got a request");
                continue;
            }
            if (got.Count != 1 || got[0] != expected) problems.Add($"{c.Label}: origin got [{string.Join(",", got)}], expected one body of {expected}");
            if (statuses.Count == 0 || statuses[0] != 200) problems.Add($"{c.Label}: answered [{string.Join(",", statuses)}]");
        }
        output.WriteLine($"refused {refused}, chunked {chunked}, content-length {length}, framing header renamed {renamed}");
        Assert.True(problems.Count == 0, $"{problems.Count} problems:\n" + string.Join("\n", problems.Take(40)));
        Assert.True(refused > cases.Count / 2 && chunked > 0 && length > 0 && renamed > 0);

        // Still serving.
        var ok = await Corpora.RawClient.ExchangeAsync(port, Encoding.ASCII.GetBytes($"GET {target(999_999)} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), TimeSpan.FromSeconds(10));
        Assert.StartsWith("HTTP/1.1 200", ok.Response);
    }
}
