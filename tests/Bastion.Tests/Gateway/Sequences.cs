using System.Buffers;
using System.Net;
using System.Net.Sockets;

namespace Bastion.Tests.Gateway;

/// <summary>Byte sequences cut into segments, as pipes hand them over.</summary>
static class Sequences
{
    sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> m, long runningIndex)
        {
            Memory = m;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> m)
        {
            var next = new Segment(m, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    /// <summary>The data cut at the given offsets (each a separate segment).</summary>
    public static ReadOnlySequence<byte> Cut(byte[] data, params int[] cuts)
    {
        if (cuts.Length == 0) return new ReadOnlySequence<byte>(data);
        int prev = 0;
        Segment? first = null, last = null;
        foreach (var c in cuts.Append(data.Length))
        {
            var m = data.AsMemory(prev, c - prev);
            if (first is null) first = last = new Segment(m, 0);
            else last = last!.Append(m);
            prev = c;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }
}

/// <summary>Two connected loopback sockets.</summary>
static class SocketPairs
{
    public static async Task<(Socket A, Socket B)> CreateAsync()
    {
        using var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        l.Listen(1);
        var a = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accept = l.AcceptAsync();
        await a.ConnectAsync(l.LocalEndPoint!);
        var b = await accept;
        b.NoDelay = true;
        return (a, b);
    }
}
