using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Protocols.Http;

namespace Bastion.Protocols.HttpReverse;

/// <summary>http-reverse: the reverse proxy on Kestrel and YARP.</summary>
public sealed class HttpReverseDescriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.HttpReverse;
    public string Name => "http-reverse";
    public IReadOnlySet<string> Attributes { get; } = new HashSet<string>
        { "source", "user", "group", "host", "port", "method", "path", "url", "header", "content_type", "size", "time", "not", "upgrade" };

    public IReadOnlyList<OwnKey> OwnKeys { get; } =
        [new OwnKey("routes", l => !l.Routes.IsEmpty, "routes are for http-reverse listeners")];

    public void Validate(BastionConfig root, ListenerConfig l, Action<SourcePos, string> error)
    {
        if (l.Routes.IsEmpty) error(l.Pos, $"listener '{l.Name}': http-reverse needs at least one route");
        foreach (var r in l.Routes)
            if (!root.Upstreams.ContainsKey(r.Upstream) && !ConfigValidator.LooksLikeUrl(r.Upstream))
                error(r.Pos, $"route: unknown upstream '{r.Upstream}'{Suggest.Hint(r.Upstream, root.Upstreams.Keys)} (define it under 'upstreams:' or give a URL)");
        ReverseConfigCheck.Validate(l, error);
    }

    /// <summary>
    /// `METHOD URL` as a client would send it to this listener: host and path from the URL, `port` the listener's own
    /// (the port the request arrives on, as live), mapped by the code the live handler uses.
    /// </summary>
    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error)
    {
        if (!HttpAttributes.TrySplitRequest(request, out var method, out var url, out error)) return false;
        if (method == "CONNECT")
        {
            error = "the reverse proxy does not take CONNECT: give 'METHOD URL'";
            return false;
        }
        // Null: no URL at all (a usage error); a malformed or ambiguous one is the live 400 (HttpAttributes.Refusal).
        return HttpAttributes.OriginUrl(a, method, url, listener.Listen.Port, listener, out error) is not null || error is null;
    }

    public Decision Decide(CompiledPolicy policy, RequestAttributes a, PolicyTrace? trace = null) => HttpDecisions.Decide(policy, a, trace);

    public IGatewayListener Create(ListenerContext ctx) => new ReverseProxyListener(ctx);
}
