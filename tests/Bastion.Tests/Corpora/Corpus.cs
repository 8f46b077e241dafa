using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Bastion.Tests.Corpora;

/// <summary>Where the public corpora live: ../shared next to the repository, else /work/shared.</summary>
public static class Corpus
{
    public static string Root { get; } = Locate();

    static string Locate()
    {
        var candidates = new List<string> { Path.Combine(Repo.Root, "..", "shared", "corpora") };
        candidates.Add("/work/shared/corpora");
        foreach (var c in candidates)
            if (Directory.Exists(c)) return Path.GetFullPath(c);
        return "";
    }

    /// <summary>A corpus folder; fails the test (never skips it) when the corpora are missing.</summary>
    public static string Dir(string name)
    {
        Assert.True(Root.Length > 0, "corpora not found: expected ../shared/corpora next to the repository or /work/shared/corpora");
        var d = Path.Combine(Root, name);
        Assert.True(Directory.Exists(d), $"corpus folder missing: {d}");
        return d;
    }
}

/// <summary>
/// An origin that answers 200 to anything, after reading the whole request body: a request counts as delivered
/// only when the origin saw all of it (a proxy that aborts a bad body mid-way does not deliver it).
/// </summary>
public sealed class SinkOrigin : IAsyncDisposable
{
    public TestOrigin Origin { get; private set; } = null!;
    public int Port => Origin.Port;
    int _delivered;
    public int Delivered => Volatile.Read(ref _delivered);
    readonly Dictionary<string, int> _byKey = [];

    public static async Task<SinkOrigin> StartAsync()
    {
        var sink = new SinkOrigin();
        sink.Origin = await TestOrigin.StartAsync(extra: app => app.Use(async (HttpContext ctx, RequestDelegate _) =>
        {
            var buf = new byte[16 * 1024];
            while (await ctx.Request.Body.ReadAsync(buf) > 0) { }
            Interlocked.Increment(ref sink._delivered);
            // Cases say who they are in the path: /k/{key}/...
            var path = ctx.Request.Path.Value ?? "";
            if (path.StartsWith("/k/", StringComparison.Ordinal))
            {
                var end = path.IndexOf('/', 3);
                var key = end < 0 ? path[3..] : path[3..end];
                lock (sink._byKey) sink._byKey[key] = sink._byKey.GetValueOrDefault(key) + 1;
            }
            ctx.Response.ContentType = "text/plain";
            await ctx.Response.WriteAsync("ok\n");
        }));
        return sink;
    }

    public int DeliveredFor(string key)
    {
        lock (_byKey) return _byKey.GetValueOrDefault(key);
    }

    public ValueTask DisposeAsync() => Origin.DisposeAsync();
}

/// <summary>A raw client connection: send bytes, half-close, read until the gateway closes (or a deadline).</summary>
public static class RawClient
{
    public sealed record Result(string Response, int LocalPort, bool TimedOut, bool Reset, TimeSpan Elapsed);

    public static async Task<Result> ExchangeAsync(int port, byte[] request, TimeSpan deadline)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(IPAddress.Loopback, port);
        int local = ((IPEndPoint)s.LocalEndPoint!).Port;
        try
        {
            await s.SendAsync(request, SocketFlags.None);
            s.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // The gateway may answer and close before reading everything (a 400 on the head): read what it said.
        }
        var text = await Raw.ReadUntilCloseAsync(s, deadline);
        bool timedOut = text.EndsWith("<<timeout: connection still open>>", StringComparison.Ordinal);
        bool reset = text.EndsWith("<<reset>>", StringComparison.Ordinal);
        return new Result(text, local, timedOut, reset, sw.Elapsed);
    }

    /// <summary>Status codes of every response head in the text (pipelined answers included).</summary>
    public static List<int> Statuses(string response)
    {
        var list = new List<int>();
        int i = 0;
        while ((i = response.IndexOf("HTTP/1.1 ", i, StringComparison.Ordinal)) >= 0)
        {
            if ((i == 0 || response[i - 1] == '\n') && i + 12 <= response.Length && int.TryParse(response.AsSpan(i + 9, 3), out var code))
                list.Add(code);
            i += 9;
        }
        return list;
    }
}

/// <summary>Runs work items with a concurrency cap.</summary>
public static class Bounded
{
    public static async Task<TOut[]> MapAsync<TIn, TOut>(IReadOnlyList<TIn> items, int concurrency, Func<TIn, Task<TOut>> work)
    {
        var results = new TOut[items.Count];
        int next = -1;
        var workers = Enumerable.Range(0, Math.Min(concurrency, Math.Max(1, items.Count))).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < items.Count)
                results[i] = await work(items[i]);
        });
        await Task.WhenAll(workers);
        return results;
    }
}

static class Latin1
{
    public static string Text(byte[] b) => Encoding.Latin1.GetString(b);
}
