using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// The ftp listener: the shared accept loop (limits, registry, PROXY header, drain) hands each control connection
/// to an <see cref="FtpSession"/>. Keeps the settings made from the configuration in force (certificates loaded
/// once per snapshot; a session keeps the ones it started with).
/// </summary>
public sealed class FtpListener(ListenerContext ctx) : StreamListener(ctx)
{
    sealed record Prepared(FtpConfig Config, FtpSettings Settings);

    Prepared? _prepared;

    public override Task StartAsync(CancellationToken ct)
    {
        // Certificates are read before the port opens: a bad one fails the start, not every session.
        _ = Settings();
        return base.StartAsync(ct);
    }

    readonly StreamUpstreamsSlot _upstreams = new();

    protected override Task HandleAsync(ClientConnection conn)
    {
        var cfg = Ctx.Config;
        var upstreams = cfg.Upstream is null ? null : _upstreams.For(cfg, Ctx.Runtime.Config);
        return new FtpSession(Ctx, Admission, conn, Settings(), upstreams).RunAsync();
    }

    public override async Task StopAsync(CancellationToken drain)
    {
        await base.StopAsync(drain).ConfigureAwait(false);
        _upstreams.Dispose();
    }

    FtpSettings Settings()
    {
        var cfg = Ctx.Config.Ftp ?? FtpConfig.Default;
        var p = Volatile.Read(ref _prepared);
        if (p is not null && ReferenceEquals(p.Config, cfg)) return p.Settings;
        try
        {
            p = new Prepared(cfg, new FtpSettings(Ctx.Runtime.Config, cfg));
        }
        catch (Exception e) when (p is not null && e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            // A reload that broke a certificate keeps the previous settings for new sessions.
            Console.Error.WriteLine($"bastion: listener {Name}: ftp settings not reloaded: {e.Message}");
            p = p with { Config = cfg };
        }
        Volatile.Write(ref _prepared, p);
        return p.Settings;
    }

    /// <summary>Over the connection limit: a 421 greeting (RFC 959) instead of a silent close.</summary>
    protected override void RejectOverLimit(Socket socket)
    {
        try { socket.Send("421 Too many connections, try again later\r\n"u8, SocketFlags.None); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        base.RejectOverLimit(socket);
    }
}
