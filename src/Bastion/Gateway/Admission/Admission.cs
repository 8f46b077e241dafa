using System.Net;
using Bastion.Hosting;

namespace Bastion.Gateway;

/// <summary>
/// What every listener does with a new connection before its protocol speaks, socket-based and Kestrel-based
/// alike: the connection limit, the registry (admin API, metrics, draining), the PROXY protocol header from
/// trusted fronts, and at the end the connection's closed line. The steps, in order:
/// <see cref="TryEnter"/> (or <see cref="RefuseOverLimit"/>), <see cref="Register"/>, <see cref="IdentifyAsync"/>,
/// then the protocol, then <see cref="Release"/>. <see cref="StopAccepting"/> and <see cref="DrainAsync"/> stop it.
/// </summary>
public sealed class Admission(ListenerContext ctx)
{
    readonly CancellationTokenSource _stopAccepting = new();
    readonly CancellationTokenSource _abortAll = new();
    readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);
    int _active;

    /// <summary>Connections admitted and not yet released.</summary>
    public int Active => Volatile.Read(ref _active);

    /// <summary>Cancelled when the listener stops accepting: idle connections close now, busy ones finish first.</summary>
    public CancellationToken Draining => _stopAccepting.Token;

    public bool IsStopping => _stopAccepting.IsCancellationRequested;

    /// <summary>Takes a place under `limits.max_connections`; false when none is left (nothing to release then).</summary>
    public bool TryEnter()
    {
        if (Interlocked.Increment(ref _active) <= ctx.Config.Limits.MaxConnections) return true;
        Leave();
        return false;
    }

    /// <summary>The line for a connection turned away by the limit (the protocol may have answered, e.g. HTTP 503).</summary>
    public void RefuseOverLimit(string? client) => OverLimit(client).Close();

    /// <summary>The record of a refusal over the limit, not yet closed: for a protocol that answers with its id first.</summary>
    public Exchange OverLimit(string? client) =>
        ctx.OpenRefused(client).Deny(PseudoRules.MaxConnections, "connection limit reached");

    /// <summary>Registers an admitted connection: the registry, the connection metrics, its record (the closed line), abort on drain.</summary>
    public ClientConnection Register(Transport transport, IPEndPoint peer, IPEndPoint? local)
    {
        var conn = NewConnection(transport, peer, local);
        conn.Record = ctx.Open(conn, ExchangeKinds.Connection);
        conn.DrainRegistration = _abortAll.Token.UnsafeRegister(static c => ((ClientConnection)c!).Abort(), conn);
        ctx.Connections.Add(conn);
        ctx.Metrics.ConnectionOpened(ctx.Name);
        return conn;
    }

    ClientConnection NewConnection(Transport transport, IPEndPoint peer, IPEndPoint? local) => new()
    {
        Listener = ctx.Name,
        Type = ctx.TypeName,
        Client = peer,
        Local = local,
        Transport = transport,
        Draining = _stopAccepting.Token,
    };

    /// <summary>
    /// A connection opened on behalf of <paramref name="parent"/> (an FTP data channel): registered and linked (it
    /// is aborted with its parent), not counted against the limit. Its <see cref="ClientConnection.Record"/> is a
    /// transfer record that <see cref="ReleaseChild"/> writes.
    /// </summary>
    public ClientConnection RegisterChild(ClientConnection parent, Transport transport, IPEndPoint peer, IPEndPoint? local)
    {
        var child = NewConnection(transport, peer, local);
        child.User = parent.User;
        child.Record = ctx.Open(child, ExchangeKinds.Transfer);
        parent.AddChild(child);
        ctx.Connections.Add(child);
        return child;
    }

    /// <summary>The child ended: out of the registry and its parent, its transfer line written.</summary>
    public void ReleaseChild(ClientConnection child)
    {
        ctx.Connections.Remove(child);
        child.Parent?.RemoveChild(child);
        child.Record.Close();
    }

    /// <summary>
    /// A trusted front must open with a PROXY v1/v2 header: the client it names replaces the peer for policy and
    /// logs (LOCAL/UNKNOWN keep the peer), a verified client certificate's CN becomes the user. Anything else is
    /// refused: false, with the connection's record saying why. Connections from anyone else pass untouched.
    /// </summary>
    public async Task<bool> IdentifyAsync(ClientConnection conn)
    {
        if (!ctx.TrustsProxyProtocolFrom(conn.Client.Address)) return true;
        var (header, error) = await ProxyProtocol.ReadAsync(conn.Transport.Input, ctx.Config.Limits.HeaderTimeout, conn.Aborted)
            .ConfigureAwait(false);
        if (header is null)
        {
            conn.Record.Deny(PseudoRules.AcceptProxyProtocol, error);
            return false;
        }
        conn.ProxyHeader = header;
        if (header.Source is { } src)
        {
            conn.Client = src;
            conn.Record.Client = conn.ClientText;
        }
        if (header.VerifiedClientCn is { } cn) conn.User ??= cn;
        return true;
    }

    /// <summary>The connection ended: out of the registry and the metrics, and its closed line written.</summary>
    public void Release(ClientConnection conn)
    {
        ctx.Connections.Remove(conn);
        ctx.Metrics.ConnectionClosed(ctx.Name);
        conn.DrainRegistration.Dispose();
        conn.Record.Close();
        Leave();
    }

    void Leave()
    {
        if (Interlocked.Decrement(ref _active) == 0 && IsStopping) _idle.TrySetResult();
    }

    public void StopAccepting()
    {
        try { _stopAccepting.Cancel(); }
        catch (ObjectDisposedException) { }
    }

    /// <summary>
    /// Waits for open connections to finish until <paramref name="drain"/> is cancelled, then aborts the rest and
    /// gives them a moment to wind down.
    /// </summary>
    public async Task DrainAsync(CancellationToken drain)
    {
        StopAccepting();
        if (Active == 0) _idle.TrySetResult();
        try { await _idle.Task.WaitAsync(drain).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
        if (Active == 0) return;
        _abortAll.Cancel();
        try { await _idle.Task.WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false); }
        catch (TimeoutException) { }
    }
}
