using System.Net.Security;
using System.Net.Sockets;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Protocols.Http.Engine;
using Bastion.Protocols.Http.Io;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// The reverse proxy (SPEC 3, http-reverse). The shared accept loop and admission; then, per connection: TLS
/// (when the listener has certificates: chosen by SNI, ALPN h2 or http/1.1) done here; HTTP/1.1 on the engine
/// (<see cref="ReverseSession"/>); HTTP/2 handed to Kestrel and YARP (<see cref="Http2Handoff"/>). Both ask the same
/// policy, routes and upstream groups (<see cref="ReverseStates"/>).
/// </summary>
public sealed class ReverseProxyListener(ListenerContext ctx) : StreamListener(ctx)
{
    ReverseStates? _states;
    ServerCertificates? _certs;
    Hosting.Runtime? _certsFor;
    readonly object _certsLock = new();
    Http2Handoff? _h2;
    bool _stopped;

    /// <summary>For tests and the admin API: the upstream groups in force and their targets' health.</summary>
    public IReadOnlyDictionary<string, UpstreamGroup> Upstreams => _states?.Current().Groups ?? [];

    public int ActiveConnections => Active;

    public override async Task StartAsync(CancellationToken ct)
    {
        var cfg = Ctx.Config;
        _states = new ReverseStates(Ctx);
        Ctx.Host.ReloadFinished += OnReloaded;
        if (!cfg.Tls.IsEmpty) await StartTlsAsync(cfg, ct).ConfigureAwait(false);
        await base.StartAsync(ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Certificates and the HTTP/2 side (Kestrel, YARP): only for a TLS listener. A method of its own, so that a plain
    /// listener never loads those assemblies (compiling a method resolves every type it names).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    async Task StartTlsAsync(Configuration.ListenerConfig cfg, CancellationToken ct)
    {
        _certsFor = Ctx.Runtime;
        _certs = new ServerCertificates(_certsFor.Config, cfg.Tls);
        _h2 = await Http2Handoff.StartAsync(Ctx, cfg.Limits,
            sp => new ReverseHandler(Ctx, _states!, sp.GetRequiredService<IHttpForwarder>()).HandleAsync, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Over max_connections: plain HTTP gets the 503 page with the refusal's id, like the forward proxy. A TLS listener
    /// closes: a plain answer would be garbage to a TLS client, and a handshake costs what the limit protects.
    /// </summary>
    protected override void RejectOverLimit(Socket socket)
    {
        if (_certs is null) Http.OverLimitPage.Answer(socket, Admission);
        else base.RejectOverLimit(socket);
    }

    /// <summary>Routes and groups follow a reload at once rather than on the next request, so that /healthz and the
    /// upstream metrics stop showing a group the new configuration dropped or changed.</summary>
    void OnReloaded(string? _)
    {
        if (_stopped) return;
        try { _states?.Current(); }
        catch (Exception e) { Console.Error.WriteLine($"bastion: listener {Ctx.Name}: routes not rebuilt after the reload (the next request retries): {e.Message}"); }
    }

    protected override async Task HandleAsync(ClientConnection conn)
    {
        var socket = conn.Socket!;
        if (_certs is null)
        {
            await new ReverseSession(Ctx, conn, _states!, Duplex.Over(socket), tls: false).RunAsync().ConfigureAwait(false);
            return;
        }
        await ServeTlsAsync(conn, socket).ConfigureAwait(false);
    }

    /// <summary>TLS, then HTTP/2 or HTTP/1.1 by ALPN. Its own method: a plain listener never loads the TLS assemblies.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    async Task ServeTlsAsync(ClientConnection conn, Socket socket)
    {
        var certs = Certificates();
        // What a PROXY header reader buffered past the header is the start of the TLS handshake.
        Stream raw = new NetworkStream(socket, ownsSocket: false);
        if (conn.Transport.HasInputPipe && conn.Transport.TakeBuffered() is { IsEmpty: false } early) raw = new Gateway.Tls.ReplayStream(early, raw);
        var ssl = new SslStream(raw, leaveInnerStreamOpen: false);
        await using (ssl.ConfigureAwait(false))
        {
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted))
            {
                timeout.CancelAfter(Ctx.Config.Limits.HeaderTimeout);
                try
                {
                    await ssl.AuthenticateAsServerAsync(static (_, hello, state, _) => ValueTask.FromResult(new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = ((ServerCertificates)state!).Select(hello.ServerName),
                        ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
                    }), certs, timeout.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (Duplex.IsIoError(e))
                {
                    // A failed or abandoned handshake: the connection's closed line says so.
                    conn.Record.Reason = e is OperationCanceledException ? "TLS handshake not done in time" : $"TLS handshake failed: {Innermost(e)}";
                    return;
                }
            }
            if (ssl.NegotiatedApplicationProtocol == SslApplicationProtocol.Http2 && _h2 is { } h2)
                await h2.ServeAsync(ssl, socket, conn).ConfigureAwait(false);
            else
                await new ReverseSession(Ctx, conn, _states!, Duplex.Over(ssl, socket), tls: true).RunAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The certificates for the configuration in force: read again from their files once after each reload, so that a
    /// certificate renewed in place is served to new connections (open ones keep theirs; the listener stays bound).
    /// Reload refuses files that do not load, so a failure here is a file changed since; the previous ones stay.
    /// </summary>
    ServerCertificates Certificates()
    {
        var rt = Ctx.Runtime;
        if (ReferenceEquals(Volatile.Read(ref _certsFor), rt)) return _certs!;
        lock (_certsLock)
        {
            if (ReferenceEquals(_certsFor, rt)) return _certs!;
            try { _certs = new ServerCertificates(rt.Config, (rt.Listener(Ctx.Name) ?? Ctx.Config).Tls); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or InvalidOperationException)
            {
                Console.Error.WriteLine($"bastion: listener {Ctx.Name}: kept the previous certificates: {e.Message}");
            }
            Volatile.Write(ref _certsFor, rt);
            return _certs!;
        }
    }

    static string Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }

    public override async Task StopAsync(CancellationToken drain)
    {
        if (_stopped) return;
        _stopped = true;
        Ctx.Host.ReloadFinished -= OnReloaded;
        // HTTP/2 connections finish on Kestrel's side (GOAWAY) while the engine's drain.
        var h2 = _h2?.StopAsync(drain) ?? Task.CompletedTask;
        await base.StopAsync(drain).ConfigureAwait(false);
        await h2.ConfigureAwait(false);
        _states?.Current().DisposeGroups();
    }
}
