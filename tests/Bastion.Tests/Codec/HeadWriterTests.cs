using System.Text;
using Bastion.Protocols.Http.Codec;

namespace Bastion.Tests.Codec;

/// <summary>The head writer copies field lines as received and leaves out only what it must.</summary>
public sealed class HeadWriterTests
{
    [Fact]
    public void Copies_kept_lines_byte_for_byte_and_drops_hop_by_hop_and_listed_ones()
    {
        const string wire = "POST /a HTTP/1.1\r\nHost: h\r\nX-One:  1 \r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
            + "X-Secret: s\r\nTE: trailers\r\nProxy-Authorization: Basic x\r\nTransfer-Encoding: chunked\r\nx-two: caf\u00e9\r\n"
            + "Upgrade: h2c\r\nProxy-Connection: close\r\nVia: 1.0 a\r\n\r\n";
        var (r, h, _, _) = RequestParserTests.Parse(wire);
        Assert.Equal(ParseResult.Complete, r);
        var w = new HeadWriter(16);
        w.Append("POST /a HTTP/1.1\r\n"u8)
            .CopyFields(h, HeadWriter.Mask(KnownHeader.Host, KnownHeader.Via))
            .Field("Host"u8, "upstream:81")
            .Field("Via"u8, "1.0 a, 1.1 bastion")
            .Framing(h.Framing)
            .CrLf();
        Assert.Equal("POST /a HTTP/1.1\r\nX-One:  1 \r\nx-two: caf\u00e9\r\nHost: upstream:81\r\nVia: 1.0 a, 1.1 bastion\r\n"
            + "Transfer-Encoding: chunked\r\n\r\n", Encoding.Latin1.GetString(w.Written));
        w.Reset();
        w.Framing(new BodyFraming(BodyKind.Length, 12345)).Framing(BodyFraming.UntilClose).Framing(BodyFraming.Empty);
        Assert.Equal("Content-Length: 12345\r\n", Encoding.Latin1.GetString(w.Written));
    }

    [Fact]
    public void Keeps_everything_when_nothing_is_hop_by_hop()
    {
        const string wire = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 0\r\n\r\n";
        var (r, h, _, _) = ResponseParserTests.Parse(wire);
        Assert.Equal(ParseResult.Complete, r);
        var w = new HeadWriter();
        w.CopyFields(h, 0);
        Assert.Equal("A: 1\r\nB: 2\r\nC: 3\r\n", Encoding.Latin1.GetString(w.Written));
    }

    [Fact]
    public void Buffers_come_back_to_the_pool_when_many_exchanges_hold_one_at_once()
    {
        // More writers in flight than the shared pool keeps per size (32 a core): their buffers must still be reused.
        var writers = Enumerable.Range(0, 100).Select(_ => new HeadWriter()).ToArray();
        void Round()
        {
            foreach (var w in writers) w.Append("GET / HTTP/1.1\r\n"u8);
            foreach (var w in writers) w.Release();
        }
        Round();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Round();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 64 * 1024, $"{allocated} bytes allocated by the second round");

        // A head past the pooled sizes grows into a larger buffer and goes back without mixing the pools.
        var big = new HeadWriter();
        var line = Encoding.Latin1.GetBytes("X-Long: " + new string('a', 990) + "\r\n");
        for (int i = 0; i < 20; i++) big.Append(line);
        Assert.Equal(20 * line.Length, big.Length);
        Assert.True(big.Written[^line.Length..].SequenceEqual(line));
        big.Release();
        big.Append("A"u8);
        Assert.Equal("A", Encoding.Latin1.GetString(big.Written));
        big.Release();
    }
}
