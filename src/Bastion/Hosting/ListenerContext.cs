using System.Net;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Observability;
using Bastion.Policy;

namespace Bastion.Hosting;

/// <summary>A running listener: bound, serving, stoppable. One class per protocol implements it.</summary>
public interface IGatewayListener : IAsyncDisposable
{
    string Name { get; }
    ListenerType Type { get; }
    /// <summary>The address actually bound (the port the OS chose when `listen:` said 0).</summary>
    IPEndPoint? BoundEndPoint { get; }
    bool IsRunning { get; }
    Task StartAsync(CancellationToken ct);
    /// <summary>Stops accepting, lets open exchanges finish until <paramref name="drain"/> is cancelled, then closes the rest.</summary>
    Task StopAsync(CancellationToken drain);
}

/// <summary>
/// What a listener gets from the host: the current configuration snapshot (swapped on reload), the policy it
/// answers to, and the one place where decisions are logged and counted.
/// </summary>
public sealed class ListenerContext(GatewayHost host, string name, ListenerType type)
{
    public string Name { get; } = name;
    public ListenerType Type { get; } = type;
    public string TypeName { get; } = ListenerTypes.Name(type);
    public GatewayHost Host { get; } = host;

    public Runtime Runtime => Host.Current;

    /// <summary>This listener's configuration in the current snapshot (the one it started with if reload removed it).</summary>
    public ListenerConfig Config => Host.Current.Listener(Name) ?? _lastConfig ?? throw new InvalidOperationException($"listener {Name} not configured");

    ListenerConfig? _lastConfig = host.Current.Listener(name);

    internal void Remember(ListenerConfig c) => _lastConfig = c;

    public CompiledPolicy Policy => Runtime.PolicyFor(Config);

    public AccessLog Log => Host.Log;
    public GatewayMetrics Metrics => Host.Metrics;
    public ConnectionRegistry Connections => Host.Connections;

    /// <summary>Opens the record of one request, command, transfer or connection (<see cref="ExchangeKinds"/>).</summary>
    /// <remarks>A connection has one record (<see cref="ClientConnection.Record"/>): asking for a connection record again returns it.</remarks>
    public Exchange Open(ClientConnection conn, string kind) =>
        kind == ExchangeKinds.Connection && conn.Record is { } own ? own : new(this, conn, kind, null, null);

    /// <summary>As <see cref="Open(ClientConnection, string)"/> with a given id (a connection-level decision keeps the connection's id).</summary>
    public Exchange Open(ClientConnection conn, string kind, string id) => new(this, conn, kind, null, id);

    /// <summary>A record for a connection refused before it was registered (over the limit): only the client's address is known.</summary>
    public Exchange OpenRefused(string? client) => new(this, null, ExchangeKinds.Connection, client, null);

    /// <summary>Logs an event and counts it: one event, one metric, from one place (<see cref="Exchange.Close"/> calls it).</summary>
    internal void Record(AccessEvent e)
    {
        // Last line of defence: a URL's `user:password@` never reaches a log line, whichever gateway wrote it.
        // Only a line that changes is copied: SMTP's `MAIL FROM:<a@b>` has an '@' and nothing to redact.
        if (e.Request is { } r && Redact.RequestLine(r) is var redacted && !ReferenceEquals(redacted, r)) e = e with { Request = redacted };
        // The log writer may reuse the event as soon as it has it: everything else comes first.
        if (e.Event != ExchangeKinds.Connection && e.Verdict is { } v)
        {
            Metrics.Decision(Name, TypeName, v, e.Rule ?? "");
            if (v == Verdict.Deny)
            {
                e.Pooled = false;   // kept by the dashboard
                Host.RecentDenials.Add(e);
            }
        }
        Log.Write(e);
    }

    /// <summary>
    /// Counts a decision whose log line is left out (repeated UDP denials are logged at most once a second): the
    /// metrics still see every one.
    /// </summary>
    public void CountUnlogged(Decision d) => Metrics.Decision(Name, TypeName, d.Verdict, d.RuleName);

    public bool TrustsProxyProtocolFrom(IPAddress peer) =>
        Runtime.ProxyProtocolFronts.TryGetValue(Name, out var set) && set.Contains(peer);
}
