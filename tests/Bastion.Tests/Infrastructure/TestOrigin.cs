using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Bastion.Tests.Infrastructure;

/// <summary>
/// A real HTTP origin on Kestrel, port 0, for tests:
///   /100b                 100 bytes of text
///   /bytes/{n}            n bytes of a repeating pattern (streamed; Content-Length set)
///   /chunked/{n}          n bytes without Content-Length (chunked)
///   /echo                 echoes method, path, headers and the body's SHA-256 and length as JSON
///   /sha256               reads the body and answers its SHA-256 hex
///   /status/{code}        answers that status
///   /slow/{ms}            waits, then answers (a slow server, for timeouts)
///   /hold/{name}          answers once the test calls Release(name) (a request kept in flight without a clock)
///   /type/{a}/{b}         answers with Content-Type a/b
/// </summary>
public sealed class TestOrigin : IAsyncDisposable
{
    readonly WebApplication _app;
    public int Port { get; }
    public string Url => $"http://127.0.0.1:{Port}";
    public int Requests;
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource> _holds = new();

    TaskCompletionSource Hold(string name) => _holds.GetOrAdd(name, _ => new(TaskCreationOptions.RunContinuationsAsynchronously));

    /// <summary>Completes when a request for /hold/{name} has reached the origin.</summary>
    public Task Arrived(string name) => Hold("arrived:" + name).Task;

    /// <summary>Lets the requests held at /hold/{name} answer.</summary>
    public void Release(string name) => Hold(name).TrySetResult();

    TestOrigin(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public static async Task<TestOrigin> StartAsync(bool https = false, Action<WebApplication>? extra = null,
        System.Security.Cryptography.X509Certificates.X509Certificate2? certificate = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null;
            k.Listen(System.Net.IPAddress.Loopback, 0, lo =>
            {
                lo.Protocols = HttpProtocols.Http1AndHttp2;
                if (https || certificate is not null) lo.UseHttps(certificate ?? TestCerts.Localhost());
            });
        });
        var app = builder.Build();
        TestOrigin? self = null;
        app.Use(async (ctx, next) =>
        {
            Interlocked.Increment(ref self!.Requests);
            await next(ctx);
        });
        app.MapGet("/100b", () => Results.Text(new string('x', 99) + "\n", "text/plain"));
        app.MapMethods("/bytes/{n:long}", ["GET", "HEAD"], async (HttpContext ctx, long n) =>
        {
            ctx.Response.ContentType = "application/octet-stream";
            ctx.Response.ContentLength = n;
            await WritePattern(ctx, n);
        });
        app.MapGet("/chunked/{n:long}", async (HttpContext ctx, long n) =>
        {
            ctx.Response.ContentType = "application/octet-stream";
            await WritePattern(ctx, n);
        });
        app.Map("/echo", async (HttpContext ctx) =>
        {
            var (hash, len) = await Hash(ctx.Request.Body);
            var headers = ctx.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString());
            await ctx.Response.WriteAsJsonAsync(new { method = ctx.Request.Method, path = ctx.Request.Path.Value, query = ctx.Request.QueryString.Value, headers, sha256 = hash, length = len });
        });
        app.MapPost("/sha256", async (HttpContext ctx) =>
        {
            var (hash, len) = await Hash(ctx.Request.Body);
            await ctx.Response.WriteAsync($"{hash} {len}");
        });
        app.Map("/status/{code:int}", (int code) => Results.Text($"status {code}", "text/plain", statusCode: code));
        app.MapGet("/slow/{ms:int}", async (int ms, CancellationToken ct) =>
        {
            await Task.Delay(ms, ct);
            return Results.Text("slow\n");
        });
        app.MapGet("/hold/{name}", async (string name, CancellationToken ct) =>
        {
            self!.Hold("arrived:" + name).TrySetResult();
            await self.Hold(name).Task.WaitAsync(ct);
            return Results.Text("released\n");
        });
        app.MapGet("/type/{a}/{b}", (string a, string b) => Results.Text("typed body\n", $"{a}/{b}"));
        extra?.Invoke(app);
        await app.StartAsync();
        var addr = app.Urls.First();
        self = new TestOrigin(app, new Uri(addr).Port);
        return self;
    }

    /// <summary>The pattern /bytes/{n} serves, for checking integrity without holding the body.</summary>
    public static byte PatternByte(long i) => (byte)('a' + i % 26);

    public static string PatternSha256(long n)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buf = new byte[64 * 1024];
        long i = 0;
        while (i < n)
        {
            int c = (int)Math.Min(buf.Length, n - i);
            for (int k = 0; k < c; k++) buf[k] = PatternByte(i + k);
            h.AppendData(buf, 0, c);
            i += c;
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    static async Task WritePattern(HttpContext ctx, long n)
    {
        var buf = new byte[64 * 1024];
        long i = 0;
        while (i < n)
        {
            int c = (int)Math.Min(buf.Length, n - i);
            for (int k = 0; k < c; k++) buf[k] = PatternByte(i + k);
            await ctx.Response.Body.WriteAsync(buf.AsMemory(0, c));
            i += c;
        }
    }

    static async Task<(string, long)> Hash(Stream body)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buf = new byte[64 * 1024];
        long len = 0;
        int n;
        while ((n = await body.ReadAsync(buf)) > 0)
        {
            h.AppendData(buf, 0, n);
            len += n;
        }
        return (Convert.ToHexStringLower(h.GetHashAndReset()), len);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

public static class Json
{
    public static JsonElement Parse(string s) => JsonDocument.Parse(s).RootElement.Clone();
}

public static class Text
{
    public static string Utf8(ReadOnlySpan<byte> b) => Encoding.UTF8.GetString(b);
}
