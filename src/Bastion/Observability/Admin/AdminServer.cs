using System.Net;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Bastion.Configuration;
using Bastion.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Bastion.Observability.Admin;

/// <summary>
/// The admin listener (SPEC 4): health, Prometheus metrics, the JSON API and the dashboard, on a small Kestrel
/// server of its own so that a busy or broken gateway listener never hides the gateway's state. Started, re-bound
/// and stopped by <see cref="GatewayHost"/>.
/// </summary>
public sealed class AdminServer : IAsyncDisposable
{
    readonly GatewayHost _host;
    AdminConfig _config;
    /// <summary>SHA-256 of the bearer token, or null when the API is open (loopback without token_file).</summary>
    volatile byte[]? _tokenHash;
    WebApplication? _app;
    readonly Dictionary<string, (byte[] Body, string Type)> _assets;

    /// <summary>The header a reload must carry when no token guards the API (a cross-site form cannot send it).</summary>
    public const string ReloadHeader = "X-Bastion-Reload";

    public IPEndPoint? BoundEndPoint { get; private set; }
    public TrafficHistory History { get; }
    public AdminConfig Config => _config;
    public bool RequiresToken => _tokenHash is not null;

    public AdminServer(GatewayHost host, AdminConfig config)
    {
        _host = host;
        _config = config;
        History = new TrafficHistory(host, capacity: 600);
        _assets = LoadAssets();
        Apply(config);
    }

    /// <summary>Takes a reloaded `admin:` section whose address is unchanged (the token may have changed).</summary>
    public void Apply(AdminConfig config)
    {
        _config = config;
        if (config.TokenFile is null)
        {
            _tokenHash = null;
            return;
        }
        var token = ConfigValidator.ReadToken(_host.Current.Config.Resolve(config.TokenFile));
        // Fail closed: an unreadable token file must not open the API; a random hash matches no token.
        _tokenHash = token is null ? RandomNumberGenerator.GetBytes(32) : SHA256.HashData(Encoding.UTF8.GetBytes(token));
    }

    public async Task StartAsync(CancellationToken ct)
    {
        var ep = Gateway.ListenSockets.EndPoint(_config.Listen);
        // An empty builder: no configuration files, environment variables or logging providers leak in.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "bastion-admin" });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(o =>
        {
            o.AddServerHeader = false;
            o.Limits.MaxRequestBodySize = 64 * 1024;
            o.Limits.MaxConcurrentConnections = 256;
            o.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
            o.Listen(ep);
        });
        var app = builder.Build();
        app.Run(HandleAsync);
        await app.StartAsync(ct).ConfigureAwait(false);
        _app = app;
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        BoundEndPoint = new IPEndPoint(ep.Address, new Uri(address).Port);
        _host.Metrics.EnableProcessMetrics();
        History.Start();
        _host.Diagnostics.WriteLine($"bastion: admin listening on http://{FormatHost(BoundEndPoint)}/ (dashboard, /metrics, /api)"
            + (RequiresToken ? "; the API needs a bearer token" : ""));
    }

    static string FormatHost(IPEndPoint ep) =>
        ep.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ep.Address}]:{ep.Port}" : $"{ep.Address}:{ep.Port}";

    async Task HandleAsync(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "/";
        // A fixed set of label values: arbitrary paths must not grow the metric.
        var endpoint = path is "/healthz" or "/readyz" or "/metrics" or "/api/stats" or "/api/connections" or "/api/denials"
            or "/api/config" or "/api/reload" ? path : "other";
        try
        {
            var resp = ctx.Response;
            resp.Headers["X-Content-Type-Options"] = "nosniff";
            resp.Headers["Cache-Control"] = "no-store";
            if (!HostHeaderAllowed(ctx.Request.Host.Host))
            {
                // DNS rebinding: a web page must not read the API through a name that points at loopback.
                await Text(ctx, 421, "misdirected request: use an IP address or localhost\n").ConfigureAwait(false);
                return;
            }
            bool isGet = HttpMethods.IsGet(ctx.Request.Method) || HttpMethods.IsHead(ctx.Request.Method);
            bool isReload = path == "/api/reload";
            // Reading is GET; the one action, reload, is POST only (a link or an <img> must not trigger it).
            if (isReload ? !HttpMethods.IsPost(ctx.Request.Method) : !isGet)
            {
                resp.Headers.Allow = isReload ? "POST" : "GET, HEAD";
                await Text(ctx, 405, "method not allowed\n").ConfigureAwait(false);
                return;
            }
            if (path == "/healthz")
            {
                await Health(ctx).ConfigureAwait(false);
                return;
            }
            // The page and its script hold no data: they load without a token and ask for one when the API says 401.
            if (StaticAsset(path) is { } asset)
            {
                endpoint = "/";
                await Asset(ctx, asset).ConfigureAwait(false);
                return;
            }
            if (!Authorized(ctx.Request))
            {
                resp.Headers.WWWAuthenticate = "Bearer realm=\"bastion-admin\"";
                await Text(ctx, 401, "unauthorized: send 'Authorization: Bearer <token>' (admin.token_file)\n").ConfigureAwait(false);
                return;
            }
            switch (path)
            {
                case "/readyz":
                    await Ready(ctx).ConfigureAwait(false);
                    break;
                case "/metrics":
                    resp.ContentType = "text/plain; version=0.0.4; charset=utf-8";
                    await _host.Metrics.Registry.CollectAndExportAsTextAsync(resp.Body, ctx.RequestAborted).ConfigureAwait(false);
                    break;
                case "/api/stats":
                    await Json(ctx, w => AdminApi.WriteStats(w, _host, this, Since(ctx.Request))).ConfigureAwait(false);
                    break;
                case "/api/connections":
                    await Json(ctx, w => AdminApi.WriteConnections(w, _host, Limit(ctx.Request, 500))).ConfigureAwait(false);
                    break;
                case "/api/denials":
                    await Json(ctx, w => AdminApi.WriteDenials(w, _host, Limit(ctx.Request, 100))).ConfigureAwait(false);
                    break;
                case "/api/config":
                    await Json(ctx, w => AdminConfigJson.Write(w, _host.Current)).ConfigureAwait(false);
                    break;
                case "/api/reload":
                    if (!RequiresToken && !ctx.Request.Headers.ContainsKey(ReloadHeader))
                    {
                        // Without a token, a header no HTML form can send makes a cross-site POST impossible (CSRF):
                        // browsers ask before sending custom headers, and this server never says yes.
                        await Text(ctx, 403, $"reload needs the header '{ReloadHeader}: 1' (or a bearer token when admin.token_file is set)\n").ConfigureAwait(false);
                        break;
                    }
                    var error = await _host.ReloadAsync("admin API", ctx.RequestAborted).ConfigureAwait(false);
                    await Json(ctx, w =>
                    {
                        w.WriteStartObject();
                        w.WriteBoolean("ok", error is null);
                        w.WriteNumber("generation", _host.Current.Generation);
                        w.WriteString("error", error);
                        w.WriteEndObject();
                    }, error is null ? 200 : 422).ConfigureAwait(false);
                    break;
                default:
                    await Text(ctx, 404, "not found\n").ConfigureAwait(false);
                    break;
            }
        }
        finally
        {
            _host.Metrics.AdminRequests.WithLabels(endpoint, ctx.Response.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        }
    }

    bool HostHeaderAllowed(string host)
    {
        if (host.Length == 0 || host == "localhost" || IPAddress.TryParse(host.Trim('[', ']'), out _)) return true;
        return string.Equals(host, _config.Listen.Host, StringComparison.OrdinalIgnoreCase);
    }

    bool Authorized(HttpRequest req)
    {
        var expected = _tokenHash;
        if (expected is null) return true;
        var header = req.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        // Hashing first makes the comparison constant-time in the token's length too.
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(header[7..].Trim()));
        return CryptographicOperations.FixedTimeEquals(given, expected);
    }

    async Task Health(HttpContext ctx)
    {
        var listeners = _host.Listeners;
        var expected = _host.Current.Config.Listeners.Select(l => l.Name);
        var down = expected.Where(n => !listeners.TryGetValue(n, out var l) || !l.IsRunning).ToList();
        if (down.Count == 0) await Text(ctx, 200, $"ok: {listeners.Count} listener(s) up\n").ConfigureAwait(false);
        else await Text(ctx, 503, $"down: {string.Join(", ", down)}\n").ConfigureAwait(false);
    }

    async Task Ready(HttpContext ctx)
    {
        if (_host.Draining)
        {
            await Text(ctx, 503, "draining: shutting down\n").ConfigureAwait(false);
            return;
        }
        var listeners = _host.Listeners;
        var down = _host.Current.Config.Listeners.Select(l => l.Name).Where(n => !listeners.TryGetValue(n, out var l) || !l.IsRunning).ToList();
        if (down.Count > 0) await Text(ctx, 503, $"not ready: {string.Join(", ", down)} down\n").ConfigureAwait(false);
        else await Text(ctx, 200, $"ready: generation {_host.Current.Generation}\n").ConfigureAwait(false);
    }

    static long Since(HttpRequest req) =>
        long.TryParse(req.Query["since"].ToString(), out var s) ? s : 0;

    static int Limit(HttpRequest req, int max) =>
        int.TryParse(req.Query["limit"].ToString(), out var n) && n > 0 ? Math.Min(n, 10_000) : max;

    static async Task Text(HttpContext ctx, int status, string body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "text/plain; charset=utf-8";
        await ctx.Response.WriteAsync(body, ctx.RequestAborted).ConfigureAwait(false);
    }

    static async Task Json(HttpContext ctx, Action<System.Text.Json.Utf8JsonWriter> write, int status = 200)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(4096);
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer, new System.Text.Json.JsonWriterOptions { Indented = false }))
            write(w);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
    }

    (byte[] Body, string Type)? StaticAsset(string path)
    {
        var name = path is "/" or "/index.html" ? "index.html" : path.TrimStart('/');
        return _assets.TryGetValue(name, out var a) ? a : null;
    }

    static async Task Asset(HttpContext ctx, (byte[] Body, string Type) asset)
    {
        var h = ctx.Response.Headers;
        h["Content-Security-Policy"] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
        h["Referrer-Policy"] = "no-referrer";
        h["X-Frame-Options"] = "DENY";
        ctx.Response.ContentType = asset.Type;
        ctx.Response.ContentLength = asset.Body.Length;
        if (HttpMethods.IsHead(ctx.Request.Method)) return;
        await ctx.Response.Body.WriteAsync(asset.Body, ctx.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The dashboard's files, embedded in the binary as resources named dashboard/FILE.</summary>
    static Dictionary<string, (byte[], string)> LoadAssets()
    {
        var asm = Assembly.GetExecutingAssembly();
        var result = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (var res in asm.GetManifestResourceNames())
        {
            if (!res.StartsWith("dashboard/", StringComparison.Ordinal)) continue;
            using var s = asm.GetManifestResourceStream(res)!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            var name = res["dashboard/".Length..];
            result[name] = (ms.ToArray(), Path.GetExtension(name) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                ".svg" => "image/svg+xml",
                ".png" => "image/png",
                ".ico" => "image/x-icon",
                _ => "application/octet-stream",
            });
        }
        return result;
    }

    public async ValueTask DisposeAsync()
    {
        History.Dispose();
        if (_app is { } app)
        {
            _app = null;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try { await app.StopAsync(cts.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }
}
