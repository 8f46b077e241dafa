using System.Net;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Bastion.Protocols.Http;

namespace Bastion.Cli;

/// <summary>`bastion explain`: one request in the listener's own terms, judged by its policy, with the trace.</summary>
public static class Explain
{
    /// <summary>`--header` lines in order; a name given twice is two field lines, as on the wire.</summary>
    sealed class Headers(List<(string Name, string Value)> lines) : IHeaderSource
    {
        public string? Get(string name)
        {
            var values = lines.Where(l => l.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(l => l.Value).ToList();
            return values.Count == 0 ? null : string.Join(", ", values);
        }

        public bool TryGetLine(string name, int index, out string value)
        {
            foreach (var (n, v) in lines)
            {
                if (!n.Equals(name, StringComparison.OrdinalIgnoreCase) || index-- > 0) continue;
                value = v;
                return true;
            }
            value = "";
            return false;
        }
    }

    public static int Run(string[] args)
    {
        var file = Commands.ConfigOption(ref args);
        var listenerName = Commands.Option(ref args, "--listener");
        var source = Commands.Option(ref args, "--source");
        var user = Commands.Option(ref args, "--user");
        var contentType = Commands.Option(ref args, "--content-type");
        var size = Commands.Option(ref args, "--size");
        var sni = Commands.Option(ref args, "--sni");
        var headers = Commands.Options(ref args, "--header");
        var resolveTo = Commands.Options(ref args, "--resolve");
        if (args.Length > 0 && args[0].StartsWith("--", StringComparison.Ordinal))
            Commands.NoMore(args, "--config", "--listener", "--source", "--user", "--content-type", "--size", "--sni", "--header", "--resolve");
        var name = listenerName ?? throw new Commands.UsageException("explain needs --listener NAME");
        if (args.Length == 0) throw new Commands.UsageException("explain needs a REQUEST (like 'GET http://example.com/' or 'CONNECT example.com:443')");
        var request = string.Join(' ', args);

        Runtime rt;
        try { rt = Runtime.Load(file); }
        catch (ConfigException e)
        {
            foreach (var err in e.Errors) Console.Error.WriteLine(err);
            return Commands.ExitUsage;
        }
        var listener = rt.Listener(name) ?? throw new Commands.UsageException(
            $"no listener '{name}' in {file ?? "the embedded default"}{Configuration.Suggest.Hint(name, rt.Config.Listeners.Select(l => l.Name))} (listeners: {string.Join(", ", rt.Config.Listeners.Select(l => l.Name))})");

        var a = new RequestAttributes();
        if (source is not null)
        {
            if (!IPAddress.TryParse(source, out var ip)) throw new Commands.UsageException($"--source '{source}' is not an IP address");
            a.Source = ip;
        }
        else a.Source = IPAddress.Loopback;
        a.User = user;
        if (headers.Count > 0)
        {
            var lines = new List<(string, string)>();
            foreach (var h in headers)
            {
                int colon = h.IndexOf(':');
                if (colon <= 0) throw new Commands.UsageException($"--header '{h}' is not 'Name: value'");
                lines.Add((HeaderValue.TrimOws(h.AsSpan(0, colon)).ToString(), HeaderValue.TrimOws(h.AsSpan(colon + 1)).ToString()));
            }
            a.Headers = new Headers(lines);
        }
        if (sni is not null) a.Sni = HostName.Normalize(sni) ?? sni;
        var resolved = new List<IPAddress>();
        foreach (var r in resolveTo)
        {
            foreach (var part in r.Split(','))
            {
                var one = HeaderValue.TrimOws(part).ToString();
                if (one.Length == 0) continue;
                if (!IPAddress.TryParse(one, out var ip)) throw new Commands.UsageException($"--resolve '{one}' is not an IP address");
                resolved.Add(ip);
            }
        }

        var policy = rt.PolicyFor(listener);
        var trace = new PolicyTrace();
        Console.WriteLine($"listener {listener.Name} ({ListenerTypes.Name(listener.Type)}), policy {policy.Name}, default {(policy.Default == Verdict.Allow ? "allow" : "deny")}");
        Console.WriteLine($"request: {request}  source={a.Source}{(a.User is null ? "" : $" user={a.User}")}");
        long? sizeValue = null;
        if (size is not null)
        {
            if (!Units.TryParseSize(size, out var sv)) throw new Commands.UsageException($"--size '{size}' is not a size");
            sizeValue = sv;
        }
        var d = Judge(rt, listener, request, a, contentType, sizeValue, trace, resolved);
        if (a.Path is not null)
            Console.WriteLine($"judged as: host={a.Host} port={a.Port} path={a.Path}{(a.Url is null ? "" : $" url={a.Url}")} path_case={(a.PathIgnoreCase ? "insensitive" : "sensitive")}");
        else if (a.Host is not null) Console.WriteLine($"judged as: host={a.Host} port={a.Port}");
        foreach (var line in trace.Lines) Console.WriteLine("  " + line);
        Console.WriteLine($"verdict: {d.VerdictText} (rule {d.RuleName}{(d.Reason is null ? "" : $": {d.Reason}")})");
        return d.Allowed ? Commands.ExitOk : Commands.ExitDeny;
    }

    /// <summary>
    /// The decision a live listener would make on REQUEST: the type's descriptor maps it to attributes with the
    /// code the live session uses and decides as the session does; a content type or size judges a response too.
    /// <paramref name="a"/> comes with what the caller knows of the client (source, user, headers, SNI). Requests the
    /// live gateway refuses before asking the policy (a malformed or ambiguous target, conflicting header lines) are
    /// denied with the pseudo-rule it logs; where the client names the upstream, every address the name resolves to
    /// (<paramref name="resolveTo"/>, or the gateway's resolver) is judged as live (SPEC 2.1).
    /// </summary>
    public static Decision Judge(Runtime rt, ListenerConfig listener, string request, RequestAttributes a,
        string? contentType = null, long? size = null, PolicyTrace? trace = null, IReadOnlyList<IPAddress>? resolveTo = null)
    {
        var descriptor = ListenerDescriptors.Find(listener.Type) ?? throw new Commands.UsageException(
            $"listener '{listener.Name}' is of type {ListenerTypes.Name(listener.Type)}, which this version of bastion does not build");
        a.PathIgnoreCase = listener.PathIgnoreCase;
        if (!descriptor.TryExplain(request, listener, rt, a, out var error)) throw new Commands.UsageException(error!);
        var policy = rt.PolicyFor(listener);
        if (HttpAttributes.Refusal(listener, request) is { } refusal)
        {
            trace?.Add($"=> refused before the policy: {refusal}");
            return Decision.Deny(refusal.Contains("ambiguous", StringComparison.Ordinal) ? "protocol.ambiguous_paths" : PseudoRules.Protocol, refusal);
        }
        if (listener.RefuseConflictingHeaders && a.Headers is not null && policy.ConflictingHeader(a.Headers) is { } conflict)
        {
            trace?.Add($"=> refused before the policy: 400 conflicting values of header '{conflict}'");
            return Decision.Deny("protocol.conflicting_headers", $"400 conflicting values of header '{conflict}', which a rule judges");
        }
        if (!descriptor.HasResponsePhase)
        {
            // Decided once per command, `size` being the request's own (smtp: the message, SPEC 2.1).
            a.Size = size ?? -1;
            var once = descriptor.Decide(policy, a, trace);
            if (once.Allowed && ConnectsWhereClientSays(listener, a) && policy.HasAddressRules)
                once = ResolveStep(rt, listener, policy, a, resolveTo ?? [], trace) ?? once;
            return once;
        }
        var d = descriptor.Decide(policy, a, trace);
        if (d.Allowed && ConnectsWhereClientSays(listener, a) && policy.HasAddressRules)
            d = ResolveStep(rt, listener, policy, a, resolveTo ?? [], trace) ?? d;
        if (d.Allowed && (contentType is not null || size is not null))
        {
            a.ContentType = contentType;
            a.Size = size ?? -1;
            trace?.Add("response:");
            var rd = policy.EvaluateResponse(a, trace);
            if (!rd.Allowed) d = rd;
        }
        return d;
    }

    /// <summary>Listeners whose upstream the client names: their addresses are judged after DNS (SPEC 2.1).</summary>
    static bool ConnectsWhereClientSays(ListenerConfig l, RequestAttributes a) =>
        a.Host is not null && (l.Type is ListenerType.HttpProxy or ListenerType.Socks5
            || (l.Type is ListenerType.Ftp or ListenerType.Smtp && l.Upstream is null));

    /// <summary>The resolution step: the name's addresses (from --resolve, or the gateway's own resolver), each judged.</summary>
    static Decision? ResolveStep(Runtime rt, ListenerConfig listener, CompiledPolicy policy, RequestAttributes a, IReadOnlyList<IPAddress> given, PolicyTrace? trace)
    {
        IPAddress[] addresses;
        string how;
        if (IPAddress.TryParse(a.Host, out var literal))
        {
            addresses = [literal];
            var eff = TargetAddress.Effective(literal);
            how = eff.Equals(literal) ? "an IP literal" : $"an IP literal, which connects to {eff}";
        }
        else if (given.Count > 0)
        {
            addresses = [.. given];
            how = "--resolve";
        }
        else
        {
            var (found, err) = rt.Resolver.ResolveAsync(a.Host!, listener.Limits.ConnectTimeout, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            if (found.Length == 0)
            {
                trace?.Add($"resolve {a.Host}: {err} (the gateway would answer that it cannot connect)");
                return null;
            }
            addresses = found;
            how = rt.Resolver.SystemDns ? "the resolver (hosts file, then DNS)" : "the resolver's hosts file (dns: off)";
        }
        trace?.Add($"resolve {a.Host} -> {string.Join(", ", addresses.Select(x => x.ToString()))} ({how}); address rules on each:");
        var judged = Connector.Judge(policy, a, addresses);
        foreach (var ip in addresses) policy.JudgeAddress(a, ip, trace);
        if (judged.Denied is { } denied)
        {
            trace?.Add($"=> every address denied: the request is refused");
            return denied;
        }
        trace?.Add($"=> connects to {string.Join(", ", judged.Allowed.Select(x => x.ToString()))}");
        return null;
    }
}
